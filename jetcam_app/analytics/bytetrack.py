"""ByteTrack (Zhang et al., 2022), written from the paper: high-score detections are matched to the tracks first,
then the low-score ones continue tracks the first match left (an occluded object's score drops before it vanishes);
a Kalman filter predicts each track; a lost track waits `track_buffer` frames to be found again.

What the anchors' users reported shaped the rest: a new track is on probation and carries no ID (an ID that
flickers into existence for one false positive is what inflates counts); IDs are per tracker (one per source), start
at 1 and are never reused, also across a reconnect; with class_match a track never takes a box of another class.

update_many() steps the trackers of a batch's sources together, each on its own tracks: the Kalman steps, the
predicted boxes and the new tracks' states are one call for all of them (track_states.py), the matching is per
source. update() is a batch of one."""

from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..config import TrackerConfig
from . import kalman
from .assignment import BLOCKED, assign, iou_matrix
from .track_states import TrackStates, slots_of

LOW_MATCH_THRESH = 0.5  # 1 - IoU for the low-score match: ByteTrack's value, these boxes are less sure
PROBATION_MATCH_THRESH = 0.7  # 1 - IoU for a track on probation: a new track must overlap its next box well


@dataclass(eq=False)  # a track is itself: compared by identity
class Track:
    label: int
    box: np.ndarray  # xyxy, the last detection's
    score: float
    first_frame: int
    last_frame: int
    first_t: float
    last_t: float
    slot: int = field(repr=False, default=-1)  # its row of the tracker's Kalman states (_States)
    track_id: int = 0  # 0 while on probation
    hits: int = 1  # frames in a row it was seen while on probation

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0


class TrackUpdate(NamedTuple):
    ids: np.ndarray  # (N,) int64 per detection: its track's ID, -1 = none (on probation, or no track)
    started: List[Track]  # tracks confirmed this frame
    ended: List[Track]  # confirmed tracks lost for longer than the buffer


class _Step:
    """One tracker's frame while update_many() works on it."""

    __slots__ = ("boxes", "scores", "labels", "frame", "t_s", "steps", "everyone", "owner", "fresh")

    def __init__(self, boxes, scores, labels, frame: int, t_s: float, steps: int, everyone: List[Track]):
        self.boxes = np.array(boxes, np.float64).reshape(-1, 4)  # a copy: tracks keep views of its rows
        self.scores = np.asarray(scores, np.float64).reshape(-1)
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        self.frame, self.t_s, self.steps, self.everyone = frame, t_s, steps, everyone
        self.owner = {}  # type: Dict[int, Track]  # detection index -> track
        self.fresh = []  # type: List[int]  # detections that start tracks


Frame = Tuple[np.ndarray, np.ndarray, np.ndarray, int, float]  # boxes, scores, labels, frame index, t_s


class ByteTracker:
    """One source's tracks. update() once per processed frame, in order; `states` may be shared with the
    trackers it is stepped with (update_many)."""

    def __init__(self, config: TrackerConfig, fps: float = 30.0, states: Optional[TrackStates] = None):
        self.config = config
        self.max_lost = max(1, int(round(config.track_buffer * (fps or 30.0) / 30.0)))
        self.tracked = []  # type: List[Track]  # confirmed and seen last frame
        self.lost = []  # type: List[Track]  # confirmed, not seen lately
        self.probation = []  # type: List[Track]
        self.states = states if states is not None else TrackStates()
        self.next_id = 1
        self.confirmed_total = 0
        self._last_frame = None  # type: Optional[int]

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, frame_index: int,
               t_s: float) -> TrackUpdate:
        return update_many([self], [(boxes, scores, labels, frame_index, t_s)])[0]

    def _begin(self, boxes, scores, labels, frame_index: int, t_s: float) -> _Step:
        steps = 1 if self._last_frame is None else max(1, frame_index - self._last_frame)  # drops leave gaps
        self._last_frame = frame_index
        return _Step(boxes, scores, labels, frame_index, t_s, steps, self.tracked + self.lost + self.probation)

    def _associate(self, step: _Step, predicted: np.ndarray) -> None:
        """The three matches of ByteTrack, on the predicted boxes of every slot; step.owner and step.fresh."""
        cfg, owner = self.config, step.owner
        scores = step.scores
        high = np.nonzero(scores >= cfg.track_high_thresh)[0]
        low = np.nonzero((scores >= cfg.track_low_thresh) & (scores < cfg.track_high_thresh))[0]
        # 1. confirmed tracks (found and lost) with the high-score boxes
        pool = self.tracked + self.lost
        matches, left_tracks, left_high = self._match(pool, step, predicted, high, cfg.match_thresh, cfg.fuse_score)
        for ti, di in matches:
            owner[high[di]] = pool[ti]
        # 2. tracks that were found last frame and not now, with the low-score boxes
        recent = [pool[i] for i in left_tracks if i < len(self.tracked)]  # pool lists the found ones first
        matches2, _, _ = self._match(recent, step, predicted, low, LOW_MATCH_THRESH, False)
        for ti, di in matches2:
            owner[low[di]] = recent[ti]
        # 3. tracks on probation with the high-score boxes left
        rest = high[left_high]
        matches3, _, left_new = self._match(self.probation, step, predicted, rest, PROBATION_MATCH_THRESH,
                                            cfg.fuse_score)
        for ti, di in matches3:
            owner[rest[di]] = self.probation[ti]
        step.fresh = [di for di in rest[left_new].tolist() if scores[di] >= cfg.new_track_thresh]

    def _finish(self, step: _Step, new: List[Track]) -> TrackUpdate:
        """The probation, lost and ended tracks after the frame; `new` the tracks step.fresh started."""
        cfg, frame_index, owner = self.config, step.frame, step.owner
        started = []  # type: List[Track]
        probation = []  # type: List[Track]
        for track in self.probation:
            if track.last_frame != frame_index:
                self.states.release([track])  # missed once on probation: gone, it never had an ID
                continue
            track.hits += 1
            if track.hits >= cfg.probation_frames:
                self._confirm(track)
                started.append(track)
            else:
                probation.append(track)
        for di, track in zip(step.fresh, new):
            owner[di] = track
            if cfg.probation_frames <= 1:
                self._confirm(track)
                started.append(track)
            else:
                probation.append(track)
        self.probation = probation

        ended = []  # type: List[Track]
        tracked, lost = [], []
        for track in self.tracked + self.lost:
            if track.last_frame == frame_index:
                tracked.append(track)
            elif frame_index - track.last_frame > self.max_lost:
                ended.append(track)
            else:
                lost.append(track)
        tracked.extend(started)
        self.tracked, self.lost = tracked, lost
        self.states.release(ended)
        ids = np.full(len(step.scores), -1, np.int64)
        for di, track in owner.items():
            if track.confirmed:
                ids[di] = track.track_id
        return TrackUpdate(ids, started, ended)

    def end_all(self) -> List[Track]:
        """Every confirmed track ends (a reconnect, the run's end); the ID counter goes on."""
        ended = self.tracked + self.lost
        self.states.release(ended + self.probation)
        self.tracked, self.lost, self.probation = [], [], []
        self._last_frame = None
        return ended

    @property
    def active(self) -> List[Track]:
        """Confirmed tracks, found or lost."""
        return self.tracked + self.lost

    def _confirm(self, track: Track) -> None:
        track.track_id = self.next_id
        self.next_id += 1
        self.confirmed_total += 1

    def _match(self, tracks: List[Track], step: _Step, predicted: np.ndarray, det_idx: np.ndarray,
               threshold: float, fuse: bool):
        """(matches (track i, position in det_idx), unmatched track positions, unmatched det positions)."""
        if not tracks or not len(det_idx):
            return [], list(range(len(tracks))), list(range(len(det_idx)))
        overlap = iou_matrix(predicted[slots_of(tracks)], step.boxes[det_idx])
        if fuse:
            overlap = overlap * step.scores[det_idx][None, :]
        cost = 1.0 - overlap
        if self.config.class_match:
            track_labels = np.array([t.label for t in tracks])
            cost = np.where(track_labels[:, None] == step.labels[det_idx][None, :], cost, BLOCKED)
        return assign(cost, threshold)


def update_many(trackers: Sequence[ByteTracker], frames: Sequence[Frame]) -> List[TrackUpdate]:
    """Each tracker updated with its frame, all sharing one TrackStates (their sources' batch): the same results
    as one update() each, in fewer calls."""
    if not trackers:
        return []
    states = trackers[0].states
    if any(t.states is not states for t in trackers):
        raise ValueError("update_many: the trackers must share one TrackStates")
    steps = [t._begin(*frame) for t, frame in zip(trackers, frames)]
    everyone = [track for step in steps for track in step.everyone]
    states.predict(slots_of(everyone), np.repeat([s.steps for s in steps], [len(s.everyone) for s in steps]))
    predicted = states.predicted_boxes()
    for tracker, step in zip(trackers, steps):
        tracker._associate(step, predicted)
    _correct(states, steps)
    new = _new_tracks(states, steps)
    return [tracker._finish(step, tracks) for tracker, step, tracks in zip(trackers, steps, new)]


def _correct(states: TrackStates, steps: Sequence[_Step]) -> None:
    """Every matched track's state corrected by its box, for all trackers at once."""
    matched = [step for step in steps if step.owner]
    if not matched:
        return
    tracks = [track for step in matched for track in step.owner.values()]
    dets = [np.fromiter(step.owner.keys(), np.intp, len(step.owner)) for step in matched]
    boxes = np.concatenate([step.boxes[det] for step, det in zip(matched, dets)])
    states.correct(slots_of(tracks), kalman.xyxy_to_xyah(boxes))
    k = 0
    for step, det in zip(matched, dets):
        for di, score in zip(det.tolist(), step.scores[det].tolist()):
            track = tracks[k]
            k += 1
            track.box, track.score = step.boxes[di], score
            track.last_frame, track.last_t = step.frame, step.t_s


def _new_tracks(states: TrackStates, steps: Sequence[_Step]) -> List[List[Track]]:
    """Per step, the tracks its fresh detections start, their states initiated in one call for all: a frame may
    start a dozen (on probation, most gone the next frame), and one call each was a third of the tracker's time
    on a real detector's boxes."""
    counts = [len(step.fresh) for step in steps]
    if not sum(counts):
        return [[] for _ in steps]
    boxes = np.concatenate([step.boxes[step.fresh] for step in steps if step.fresh])
    means, covs = kalman.initiate(kalman.xyxy_to_xyah(boxes))
    slots = states.add(means, covs)
    out, k = [], 0
    for step, n in zip(steps, counts):
        det = step.fresh
        out.append([Track(label=label, box=step.boxes[di], score=score, first_frame=step.frame,
                          last_frame=step.frame, first_t=step.t_s, last_t=step.t_s, slot=slot)
                    for di, label, score, slot in zip(det, step.labels[det].tolist(), step.scores[det].tolist(),
                                                      slots[k:k + n])])
        k += n
    return out
