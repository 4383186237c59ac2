"""Every live track's Kalman state, one row (slot) each of two arrays, shared by the trackers that are stepped
together (bytetrack.update_many: one per source of a batch): predicting and correcting all their tracks then
indexes the arrays once per frame, where one small array per track, or one call per source, was most of the
trackers' time."""

from typing import Any, List

import numpy as np

from . import kalman


class TrackStates:
    def __init__(self, capacity: int = 64):
        self.means = np.zeros((capacity, 2 * kalman.NDIM))
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

    def release(self, tracks: List[Any]) -> None:
        for track in tracks:
            self._free.append(track.slot)
            track.slot = -1

    def predict(self, slots: np.ndarray, steps: np.ndarray) -> None:
        if len(slots):
            self.means[slots], self.covs[slots] = kalman.predict(self.means[slots], self.covs[slots], steps)

    def correct(self, slots: np.ndarray, xyah: np.ndarray) -> None:
        if len(slots):
            self.means[slots], self.covs[slots] = kalman.update(self.means[slots], self.covs[slots], xyah)

    def predicted_boxes(self) -> np.ndarray:
        """(capacity, 4) xyxy: every slot's predicted box (free slots' are meaningless), one conversion a frame."""
        return kalman.xyah_to_xyxy(self.means[:, :kalman.NDIM])


def slots_of(tracks: List[Any]) -> np.ndarray:
    return np.array([t.slot for t in tracks], np.intp)
