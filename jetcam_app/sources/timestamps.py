"""The timestamp sidecar of a raw recording (raw.mp4.timestamps.csv): its format, and reading it for a paced replay."""

import csv
import os
from typing import List, Tuple

from ..errors import SourceError

SIDECAR_SUFFIX = ".timestamps.csv"
SIDECAR_COLUMNS = ("frame_index", "timestamp_s")


def sidecar_path(video_path: str) -> str:
    """raw.mp4 -> raw.mp4.timestamps.csv"""
    return video_path + SIDECAR_SUFFIX


def read_sidecar(video_path: str) -> List[Tuple[int, float]]:
    """(frame_index, timestamp_s) per video frame, in file order; [] when the video has no sidecar.

    Row n describes the n-th frame of the video; gaps in frame_index are frames the camera produced
    but the recording did not get, so a replay paced by timestamp_s reproduces the original timing."""
    path = sidecar_path(video_path)
    if not os.path.exists(path):
        return []
    rows = []  # type: List[Tuple[int, float]]
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != SIDECAR_COLUMNS:
                raise SourceError("%s: expected the header %s; delete the file to replay without it"
                                  % (path, ",".join(SIDECAR_COLUMNS)))
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    rows.append((int(row[0]), float(row[1])))
                except (IndexError, ValueError) as e:
                    raise SourceError("%s line %d is not 'frame_index,timestamp_s': %r; delete the file to replay "
                                      "without it" % (path, line_no, ",".join(row))) from e
    except OSError as e:
        raise SourceError("cannot read %s (%s)" % (path, e.strerror or e)) from e
    return rows
