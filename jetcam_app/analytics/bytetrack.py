"""ByteTrack (Zhang et al., 2022), written from the paper: high-score detections are matched to the tracks first,
then the low-score ones continue tracks the first match left (an occluded object's score drops before it vanishes);
a Kalman filter predicts each track; a lost track waits `track_buffer` frames to be found again.

What the anchors' users reported shaped the rest: a new track is on probation and carries no ID (an ID that
flickers into existence for one false positive is what inflates counts); IDs are per tracker (one per source), start
at 1 and are never reused, also across a reconnect; with class_match a track never takes a box of another class."""

from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional

import numpy as np

from ..config import TrackerConfig
from . import kalman
from .assignment import BLOCKED, assign, iou_matrix

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


class _States:
    """Every live track's Kalman state, one row (slot) each of two arrays: predicting, matching and correcting many
    tracks then index the arrays once, where stacking one small array per track was most of update()'s time."""

    def __init__(self, capacity: int = 64):
        self.means = np.zeros((capacity, 8))
        self.covs = np.zeros((capacity, 3, kalman.NDIM))  # 2x2 blocks: kalman.py
        self._free = list(range(capacity - 1, -1, -1))

    def add(self, means: np.ndarray, covs: np.ndarray) -> List[int]:
        """Slots for new tracks' states (one call for all of a frame's new tracks)."""
        while len(self._free) < len(means):  # double: rows already handed out keep their slots
            n = len(self.means)
            self.means = np.concatenate([self.means, np.zeros_like(self.means)])
            self.covs = np.concatenate([self.covs, np.zeros_like(self.covs)])
            self._free = list(range(2 * n - 1, n - 1, -1)) + self._free
        slots = [self._free.pop() for _ in range(len(means))]
        self.means[slots], self.covs[slots] = means, covs
        return slots

    def release(self, tracks: List["Track"]) -> None:
        for track in tracks:
            self._free.append(track.slot)
            track.slot = -1


def _slots(tracks: List[Track]) -> np.ndarray:
    return np.array([t.slot for t in tracks], np.intp)


class ByteTracker:
    """One source's tracks. update() once per processed frame, in order."""

    def __init__(self, config: TrackerConfig, fps: float = 30.0):
        self.config = config
        self.max_lost = max(1, int(round(config.track_buffer * (fps or 30.0) / 30.0)))
        self.tracked = []  # type: List[Track]  # confirmed and seen last frame
        self.lost = []  # type: List[Track]  # confirmed, not seen lately
        self.probation = []  # type: List[Track]
        self.states = _States()
        self.next_id = 1
        self.confirmed_total = 0
        self._last_frame = None  # type: Optional[int]

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, frame_index: int,
               t_s: float) -> TrackUpdate:
        cfg = self.config
        boxes = np.array(boxes, np.float64).reshape(-1, 4)  # a copy: tracks keep views of its rows
        scores = np.asarray(scores, np.float64).reshape(-1)
        labels = np.asarray(labels, np.int64).reshape(-1)
        ids = np.full(len(scores), -1, np.int64)
        steps = 1 if self._last_frame is None else max(1, frame_index - self._last_frame)  # drops leave gaps
        self._last_frame = frame_index
        everyone = self.tracked + self.lost + self.probation
        self._predict(everyone, steps)
        high = np.nonzero(scores >= cfg.track_high_thresh)[0]
        low = np.nonzero((scores >= cfg.track_low_thresh) & (scores < cfg.track_high_thresh))[0]
        owner = {}  # detection index -> track

        # 1. confirmed tracks (found and lost) with the high-score boxes
        pool = self.tracked + self.lost
        matches, left_tracks, left_high = self._match(pool, boxes, scores, labels, high, cfg.match_thresh,
                                                      cfg.fuse_score)
        for ti, di in matches:
            owner[high[di]] = pool[ti]
        # 2. tracks that were found last frame and not now, with the low-score boxes
        recent = [pool[i] for i in left_tracks if i < len(self.tracked)]  # pool lists the found ones first
        matches2, left_recent, _ = self._match(recent, boxes, scores, labels, low, LOW_MATCH_THRESH, False)
        for ti, di in matches2:
            owner[low[di]] = recent[ti]
        # 3. tracks on probation with the high-score boxes left
        rest = high[left_high]
        matches3, _, left_new = self._match(self.probation, boxes, scores, labels, rest, PROBATION_MATCH_THRESH,
                                            cfg.fuse_score)
        for ti, di in matches3:
            owner[rest[di]] = self.probation[ti]
        self._correct(owner, boxes, scores, labels, frame_index, t_s)

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
        fresh = [di for di in rest[left_new].tolist() if scores[di] >= cfg.new_track_thresh]
        for di, track in zip(fresh, self._new_tracks(fresh, boxes, scores, labels, frame_index, t_s)):
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
        tracked.extend(t for t in started)
        self.tracked, self.lost = tracked, lost
        self.states.release(ended)
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

    def _new_tracks(self, det: List[int], boxes, scores, labels, frame_index: int, t_s: float) -> List[Track]:
        """Tracks for these detections, their states initiated at once: a frame may start a dozen (on probation,
        most gone the next frame), and one call each was a third of update()'s time on a real detector's boxes."""
        if not det:
            return []
        means, covs = kalman.initiate(kalman.xyxy_to_xyah(boxes[det]))
        return [Track(label=label, box=boxes[di], score=score, first_frame=frame_index, last_frame=frame_index,
                      first_t=t_s, last_t=t_s, slot=slot)
                for di, label, score, slot in zip(det, labels[det].tolist(), scores[det].tolist(),
                                                  self.states.add(means, covs))]

    def _predict(self, tracks: List[Track], steps: int) -> None:
        if not tracks:
            return
        slots, states = _slots(tracks), self.states
        states.means[slots], states.covs[slots] = kalman.predict(states.means[slots], states.covs[slots], steps)

    def _correct(self, owner, boxes, scores, labels, frame_index: int, t_s: float) -> None:
        if not owner:
            return
        tracks = list(owner.values())
        det = np.fromiter(owner.keys(), np.intp, len(owner))
        slots, states = _slots(tracks), self.states
        states.means[slots], states.covs[slots] = kalman.update(states.means[slots], states.covs[slots],
                                                                kalman.xyxy_to_xyah(boxes[det]))
        for di, track, score in zip(det.tolist(), tracks, scores[det].tolist()):
            track.box, track.score = boxes[di], score
            track.last_frame, track.last_t = frame_index, t_s

    def _match(self, tracks: List[Track], boxes, scores, labels, det_idx: np.ndarray, threshold: float,
               fuse: bool):
        """(matches (track i, position in det_idx), unmatched track positions, unmatched det positions)."""
        if not tracks or not len(det_idx):
            return [], list(range(len(tracks))), list(range(len(det_idx)))
        predicted = kalman.xyah_to_xyxy(self.states.means[_slots(tracks), :4])
        overlap = iou_matrix(predicted, boxes[det_idx])
        if fuse:
            overlap = overlap * scores[det_idx][None, :]
        cost = 1.0 - overlap
        if self.config.class_match:
            track_labels = np.array([t.label for t in tracks])
            cost = np.where(track_labels[:, None] == labels[det_idx][None, :], cost, BLOCKED)
        return assign(cost, threshold)
