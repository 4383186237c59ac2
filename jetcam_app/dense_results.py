"""The pose and segmentation results: COCO keypoints per person, a person mask at frame size (area, box, RLE)."""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# COCO's 17 keypoints, in COCO's (and MoveNet's) order
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
# COCO's limb pairs (person_keypoints' "skeleton", 0-based)
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


@dataclass
class Poses:
    """People's keypoints in pixels of the original frame: (P, K, 3) rows of x, y, score, COCO order."""

    keypoints: np.ndarray  # (P, K, 3) float32
    names: Sequence[str] = COCO_KEYPOINTS
    threshold: float = 0.3  # a joint under this score is left out of boxes and drawings (its row stays)
    track_ids: Optional[np.ndarray] = None  # (P,) int64 with tracking on: each person's track ID, -1 = none (yet)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def scores(self) -> np.ndarray:
        """Each person's score: the mean of its keypoints' scores."""
        return self.keypoints[..., 2].mean(-1) if len(self) else np.zeros((0,), np.float32)

    @property
    def boxes(self) -> np.ndarray:
        """(P, 4) xyxy: the extent of each person's keypoints over the threshold (zeros where none is)."""
        out = np.zeros((len(self), 4), np.float32)
        for i, person in enumerate(self.keypoints):
            seen = person[person[:, 2] >= self.threshold]
            if len(seen):
                out[i] = (seen[:, 0].min(), seen[:, 1].min(), seen[:, 0].max(), seen[:, 1].max())
        return out

    def to_json(self) -> Dict[str, Any]:
        people = []
        for i, (person, score, box) in enumerate(zip(self.keypoints.astype(np.float64), self.scores, self.boxes)):
            record = {"keypoints": [[round(x, 2), round(y, 2), round(s, 4)] for x, y, s in person.tolist()],
                      "score": round(float(score), 4), "box": [round(float(v), 2) for v in box]}
            if self.track_ids is not None:
                record["track_id"] = int(self.track_ids[i]) if self.track_ids[i] >= 0 else None
            people.append(record)
        return {"poses": people}

    def as_detections(self) -> Any:
        """The people as "person" detections for the tracker: each box the extent of its keypoints over the
        threshold, its score their mean; people with no extent (under two joints seen) are left out."""
        from .types import Detections

        boxes = self.boxes
        real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[real], self.scores[real].astype(np.float32), np.zeros(int(real.sum()), np.int64),
                          ("person",))

    def with_tracks(self, tracked: Any) -> "Poses":
        """These poses with the track IDs of `tracked` (the tracker's detections from as_detections(), those it
        kept): a person gets the ID of the box that is its own (same box and score), else -1."""
        ids = np.full(len(self), -1, np.int64)
        boxes, scores = self.boxes, self.scores
        if tracked.track_ids is not None:
            for box, score, track in zip(tracked.boxes, tracked.scores, tracked.track_ids):
                same = np.flatnonzero(np.all(np.abs(boxes - box) < 1e-3, 1) & (np.abs(scores - score) < 1e-5))
                if len(same):
                    ids[same[0]] = track
        return Poses(self.keypoints, self.names, self.threshold, ids)


def rle_counts(mask: np.ndarray) -> List[int]:
    """COCO's uncompressed run-length encoding: run lengths in column-major order, starting with a run of zeros
    (0 when the first pixel is set), so pycocotools' frPyObjects({"size": [h, w], "counts": ...}) reads it."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def rle_decode(counts: Sequence[int], size_hw: Tuple[int, int]) -> np.ndarray:
    """rle_counts() back to an HxW bool mask."""
    values = np.zeros(int(sum(counts)), dtype=bool)
    position, on = 0, False
    for run in counts:
        if on:
            values[position:position + run] = True
        position += run
        on = not on
    return values.reshape((size_hw[1], size_hw[0])).T


@dataclass
class Mask:
    """A person mask at frame size, and the network's probability map it came from (its own resolution)."""

    mask: np.ndarray  # (H, W) bool
    probability: Optional[np.ndarray] = None  # (h, w) float32 0..1 at the network's size; None on the fused path
    threshold: float = 0.5
    label: str = "person"

    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def box(self) -> Optional[List[int]]:
        """[x1, y1, x2, y2] of the mask's pixels (x2, y2 exclusive), None when it is empty."""
        rows, cols = np.flatnonzero(self.mask.any(1)), np.flatnonzero(self.mask.any(0))
        if not len(rows):
            return None
        return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]

    def to_json(self) -> Dict[str, Any]:
        h, w = self.mask.shape[:2]
        return {"mask": {"label": self.label, "area": self.area(), "box": self.box(), "size": [int(h), int(w)],
                         "counts": rle_counts(self.mask)}}
