"""The small result and frame types passed between every stage of the pipeline."""

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np


@dataclass
class Frame:
    """One captured image. `index` counts frames as the source produced them (drops leave gaps)."""

    image: np.ndarray  # H x W x 3, uint8, BGR
    index: int
    timestamp_s: float  # source time: the file's position, or the camera's capture clock
    capture_time: float  # time.perf_counter() when the frame was captured (for latency)
    name: Optional[str] = None  # the image's file name (image sources); None for video and cameras

    @property
    def hw(self) -> Tuple[int, int]:
        """(height, width): a frame decoded on the GPU (DeviceFrame) tells it without a download."""
        return int(self.image.shape[0]), int(self.image.shape[1])


class DeviceFrame(Frame):
    """Frame whose `device_image` is an H x W x 3 uint8 BGR CUDA tensor. `image` downloads it once, when a sink asks;
    dataclasses.replace(frame, image=drawn) (a frame drawn elsewhere) gives a plain host frame."""

    def __init__(self, image: Any = None, index: int = 0, timestamp_s: float = 0.0, capture_time: float = 0.0,
                 name: Optional[str] = None, device_image: Any = None):
        # Frame's dataclass __init__ is not called: it would assign `image`, which is a property here
        self._host = image
        self.device_image = device_image
        self.index = index
        self.timestamp_s = timestamp_s
        self.capture_time = capture_time
        self.name = name

    @property  # type: ignore[override]
    def image(self):
        if self._host is None:
            self._host = self.device_image.cpu().numpy()  # waits for the copy: only sinks that show pixels ask
        return self._host

    @image.setter
    def image(self, value) -> None:
        self._host = value

    @property
    def hw(self) -> Tuple[int, int]:
        if self.device_image is not None:
            return int(self.device_image.shape[0]), int(self.device_image.shape[1])
        return Frame.hw.fget(self)  # type: ignore[attr-defined]


def device_pixels(frame: Frame) -> Any:
    """The frame's CUDA tensor where it was decoded on the GPU, else None (its pixels are on the host)."""
    return getattr(frame, "device_image", None)


def detection_name(class_names: Sequence[str], label: int) -> str:
    """The name of a detection's class id: "class N" where the list has none."""
    if 0 <= label < len(class_names) and class_names[label]:
        return class_names[label]
    return "class %d" % label


@functools.lru_cache(maxsize=8)
def _encoded_names(class_names: Tuple[str, ...]) -> List[str]:
    """Each class id's name as a JSON string, for predictions.jsonl."""
    return [json.dumps(detection_name(class_names, i)) for i in range(len(class_names))]


@functools.lru_cache(maxsize=512)
def _line_format(boxes: int) -> str:
    """The %-format of a predictions.jsonl line with this many boxes: boxes, frame, labels, names, scores."""
    return ('{"boxes":[' + ",".join(["[%.2f,%.2f,%.2f,%.2f]"] * boxes) + '],"frame":%d,"labels":['
            + ",".join(["%d"] * boxes) + '],"names":[' + ",".join(["%s"] * boxes) + '],"scores":['
            + ",".join(["%.4f"] * boxes) + "]}")


@dataclass
class Detections:
    """Boxes in pixels of the original frame, xyxy, with scores and class ids."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64 class ids
    class_names: Sequence[str] = field(default_factory=list, repr=False)
    track_ids: Optional[np.ndarray] = None  # (N,) int64 with tracking on: each box's track ID, -1 = none (yet)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def name_of(self, label: int) -> str:
        return detection_name(self.class_names, label)

    def to_json(self) -> Dict[str, Any]:
        out = {
            "boxes": np.round(self.boxes.astype(np.float64), 2).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 4).tolist(),
            "labels": [int(v) for v in self.labels],
            "names": [self.name_of(int(v)) for v in self.labels],
        }  # type: Dict[str, Any]
        if self.track_ids is not None:
            out["track_ids"] = [int(v) if v >= 0 else None for v in self.track_ids]
        return out

    def track_ids_json(self) -> str:
        """',"track_ids":[12,null,...]' for a JSON line, or "" with tracking off (the line stays as it was)."""
        if self.track_ids is None:
            return ""
        return ',"track_ids":[' + ",".join(str(v) if v >= 0 else "null" for v in self.track_ids.tolist()) + "]"

    def json_line(self, frame_index: int) -> str:
        """{"frame": frame_index, **to_json()} as compact JSON with sorted keys: the same values json.dumps writes
        (numbers with fixed decimals: 12.50 for 12.5), in one %-format call, names encoded once per class list:
        it runs for every frame, holding the GIL the inference thread needs."""
        boxes = np.round(self.boxes.astype(np.float64), 2)
        scores = np.round(self.scores.astype(np.float64), 4)
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            record = dict(self.to_json(), frame=int(frame_index))
            record.pop("track_ids", None)  # track_ids_json() adds them, after the caller's "source"
            return json.dumps(record, sort_keys=True, separators=(",", ":"))
        labels = self.labels.tolist()
        encoded = _encoded_names(tuple(self.class_names))
        names = [encoded[v] if 0 <= v < len(encoded) else json.dumps(self.name_of(v)) for v in labels]
        return _line_format(len(labels)) % tuple(boxes.ravel().tolist() + [int(frame_index)] + labels + names
                                                 + scores.tolist())

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64), class_names)


@dataclass
class Classification:
    """The top-k classes of one image, best first."""

    class_ids: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) float32 probabilities
    class_names: Sequence[str] = field(default_factory=list, repr=False)

    def name_of(self, class_id: int) -> str:
        if 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return "class %d" % class_id

    def top_names(self) -> List[str]:
        return [self.name_of(int(c)) for c in self.class_ids]

    def to_json(self) -> Dict[str, Any]:
        return {
            "topk": [
                {"id": int(c), "name": self.name_of(int(c)), "score": round(float(s), 4)}
                for c, s in zip(self.class_ids, self.scores)
            ]
        }


Result = Union[Detections, Classification]


@dataclass
class FrameTiming:
    """Per-frame stage times in milliseconds, as logged in timing.csv."""

    queue_wait_ms: float = 0.0
    pre_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0
    draw_ms: float = 0.0
    sink_ms: float = 0.0
    latency_ms: float = 0.0  # capture to result (after sinks)
