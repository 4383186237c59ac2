"""Room on the disk: space left for a growing file, one-line disk-full errors, whole-line appends, a reserve for summary.json."""

import errno
import json
import os
import tempfile
from typing import Any, Optional

from ..errors import OutputError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
SUMMARY_RESERVE_BYTES = 256 * 1024  # summary.json is a few kB; the reserve is what it is written into


def _mount_point(path: str) -> str:
    path = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def room_for(path: str) -> Optional[int]:
    """Bytes `path` may still grow by: the free space of its disk, and the process's file-size limit
    (ulimit -f) less its size. None when neither can be read."""
    room = None  # type: Optional[int]
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        room = st.f_bavail * st.f_frsize
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            left = limit - (os.path.getsize(path) if os.path.exists(path) else 0)
            room = left if room is None else min(room, left)
    except (ImportError, OSError):
        pass
    return room


def disk_full_error(path: str, error: Optional[OSError] = None, what: str = "") -> OutputError:
    """One line naming the file, the disk and its free space, and the fix."""
    mount = _mount_point(path)
    room = room_for(path)
    reason = (error.strerror or str(error)) if error is not None else "the disk is nearly full"
    return OutputError("cannot write %s%s (%s): the disk at %s has %s left for it; free space there or write "
                       "elsewhere (--out, --record, --save-input)"
                       % (what + " " if what else "", path, reason, mount,
                          "unknown space" if room is None else "%.1f MB" % (max(0, room) / 2 ** 20)))


class LineFile:
    """A file written by whole lines: a line that does not fit (disk full, file-size limit) is cut off again,
    so the file always ends at the last complete line, and the error names the disk."""

    def __init__(self, path: str, what: str):
        self.path = path
        self.what = what
        self._file = open(path, "wb", buffering=0)
        self._size = 0

    def append(self, data: bytes) -> None:
        if self._file is None:
            raise OutputError("%s %s written after close (a pipeline bug)" % (self.what, self.path))
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view):]
        except OSError as e:
            try:
                self._file.truncate(self._size)
                self._file.seek(self._size)
            except OSError:
                pass  # the part line stays; the error below still stops the run
            if e.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(self.path, e, self.what) from e
            raise OutputError("cannot write the %s %s (%s)" % (self.what, self.path, e.strerror or e)) from e
        self._size += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SpaceReserve:
    """A hidden file holding room on the output disk so summary.json can still be written when the disk fills."""

    def __init__(self, folder: str, nbytes: int = SUMMARY_RESERVE_BYTES):
        self.path = os.path.join(folder, ".summary.reserve")
        try:
            with open(self.path, "wb") as f:
                f.write(b"\0" * nbytes)
        except OSError:
            self.release()  # no room even for this: the run's first write will say so

    def release(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def write_json_atomic(path: str, data: Any, reserve: Optional[SpaceReserve] = None) -> None:
    """JSON to a unique temporary file beside `path`, then renamed over it; the reserve is freed first.
    Raises OSError; the temporary file never stays behind."""
    if reserve is not None:
        reserve.release()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would hide the summary from other users
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
