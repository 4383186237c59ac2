"""The per-frame logs: timing.csv and predictions.jsonl, flushed as they go."""

import csv
import io
import json
import logging
import math
import os
import time
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import OutputError
from ..types import FrameTiming
from ..verdict import TimingAccumulator, service_ms
from .diskspace import LineFile

log = logging.getLogger(__name__)

TIMING_COLUMNS = (
    "frame_index", "source_ts_s", "latency_ms", "queue_wait_ms", "pre_ms", "infer_ms", "post_ms", "draw_ms",
    "sink_ms", "service_ms", "dropped_so_far", "rss_mb", "gpu_mb", "t_s",
)


def _open_for_writing(path: str, what: str) -> LineFile:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        return LineFile(path, what)
    except OSError as e:
        raise OutputError("cannot write the %s %s (%s); choose a writable folder with --out DIR"
                          % (what, path, e.strerror or e)) from e


def _finite(result: Any) -> bool:
    for name in ("scores", "boxes"):
        values = getattr(result, name, None)
        if values is not None and not np.isfinite(values).all():
            return False
    return True


def _nulls_for_non_finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _nulls_for_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulls_for_non_finite(v) for v in value]
    return value


class TimingLog:
    """timing.csv: one row per processed frame, flushed on every row so a crash loses nothing already processed."""

    def __init__(self, path: str, extra_columns: Sequence[str] = ()):
        self.path = path
        self.rows = 0
        self.accumulated = TimingAccumulator()
        # perf_counter() when the run's clock started (the pipeline sets it): t_s, the row's time since then, lines
        # rows up with the summary's wall time and, through its started_unix, with other runs at the same time
        self.clock_start = None  # type: Optional[float]
        self._file = _open_for_writing(path, "timing log")
        # rows are formatted into a buffer and appended whole: a full disk never leaves half a row
        self._row = io.StringIO()
        self._writer = csv.writer(self._row)
        self._append(TIMING_COLUMNS + tuple(extra_columns))  # several sources add "source"

    def _append(self, row) -> None:
        self._row.seek(0)
        self._row.truncate()
        self._writer.writerow(row)
        self._file.append(self._row.getvalue().encode("utf-8"))

    def write(self, frame_index: int, source_ts_s: float, timing: FrameTiming, dropped_so_far: int,
              rss_mb: Optional[float], gpu_mb: Optional[float], extra: Sequence[Any] = ()) -> None:
        if self._file is None:
            raise OutputError("timing log %s written after close (a pipeline bug)" % self.path)
        self._append([
            int(frame_index), "%.6f" % source_ts_s, "%.3f" % timing.latency_ms, "%.3f" % timing.queue_wait_ms,
            "%.3f" % timing.pre_ms, "%.3f" % timing.infer_ms, "%.3f" % timing.post_ms, "%.3f" % timing.draw_ms,
            "%.3f" % timing.sink_ms, "%.3f" % service_ms(timing), int(dropped_so_far),
            "" if rss_mb is None else "%.1f" % rss_mb, "" if gpu_mb is None else "%.1f" % gpu_mb,
            "" if self.clock_start is None else "%.6f" % (time.perf_counter() - self.clock_start),
        ] + list(extra))
        self.accumulated.add(timing)
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "TimingLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PredictionLog:
    """predictions.jsonl: {"frame": i, "source": name, ...result.to_json()} per processed frame; sorted keys, so
    replays diff cleanly. `source` names the image file, or the video path / camera URI."""

    def __init__(self, path: str):
        self.path = path
        self.rows = 0
        self._file = _open_for_writing(path, "prediction log")
        self._warned_nan = False

    def write(self, frame_index: int, result: Any, source: Optional[str] = None) -> None:
        if self._file is None:
            raise OutputError("prediction log %s written after close (a pipeline bug)" % self.path)
        if result is not None and not _finite(result):
            line = self._finite_line(frame_index, result, source)
        elif hasattr(result, "json_line"):  # detections: a faster encoder, the same values
            line = result.json_line(frame_index)
            if source is not None:  # "source" sorts after every key json_line writes (boxes .. scores)
                line = line[:-1] + ',"source":' + json.dumps(source) + "}"
            tracks = result.track_ids_json()  # and "track_ids" after "source"
            if tracks:
                line = line[:-1] + tracks + "}"
        else:
            record = dict(result.to_json()) if result is not None else {}
            record["frame"] = int(frame_index)
            if source is not None:
                record["source"] = source
            line = json.dumps(record, sort_keys=True, separators=(",", ":"))
        self._file.append((line + "\n").encode("utf-8"))
        self.rows += 1

    def _finite_line(self, frame_index: int, result: Any, source: Optional[str]) -> str:
        """NaN or infinite scores or boxes (broken weights) are written as null: NaN is not JSON."""
        if not self._warned_nan:
            self._warned_nan = True
            log.warning("frame %d has NaN or infinite scores or boxes (broken or random weights?); predictions.jsonl "
                        "writes them as null", frame_index)
        record = _nulls_for_non_finite(dict(result.to_json(), frame=int(frame_index)))
        if source is not None:
            record["source"] = source
        return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "PredictionLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
