"""Only regular files are read: a FIFO blocks open() and read() forever, deaf to Ctrl-C; a device or socket is no
file of images, videos or settings. Names what a path is when it is something else."""

import os
import stat
from typing import Optional

# (test, how messages name it), in the order they are tried
_SPECIAL = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class NotRegularFileError(OSError):
    """The path is a FIFO, socket, device or folder; `kind` says which ("a FIFO")."""

    def __init__(self, path: str, kind: str):
        super().__init__("%s is %s, not a regular file" % (path, kind))
        self.filename = path
        self.kind = kind


class FileTooLargeError(OSError):
    """The file holds more bytes than its reader accepts; `size` is how many."""

    def __init__(self, path: str, size: int, limit: int):
        super().__init__("%s is %d bytes, more than the %d accepted" % (path, size, limit))
        self.filename = path
        self.size = size
        self.limit = limit


def mode_kind(mode: int) -> Optional[str]:
    """None for a regular file, else what it is: "a FIFO", "a socket", "a character device", ..."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in _SPECIAL:
        if test(mode):
            return kind
    return "not a regular file"


def special_kind(path: str) -> Optional[str]:
    """What `path` is when it exists and is no regular file (symlinks followed); None otherwise (a missing path is
    the caller's own error)."""
    try:
        return mode_kind(os.stat(path).st_mode)
    except OSError:
        return None


def read_regular(path: str, max_bytes: Optional[int] = None) -> bytes:
    """The whole file; NotRegularFileError without opening it when it is a FIFO, device, ... (checked again on the
    open descriptor, in case it was swapped in between), FileTooLargeError above max_bytes."""
    kind = special_kind(path)
    if kind is not None:
        raise NotRegularFileError(path, kind)
    # O_NONBLOCK: should a FIFO replace the file after the check, open() returns at once instead of waiting for a writer
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        kind = mode_kind(info.st_mode)
        if kind is not None:
            raise NotRegularFileError(path, kind)
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileTooLargeError(path, info.st_size, max_bytes)
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise FileTooLargeError(path, len(data), max_bytes)
    return data
