"""Reading the user's files safely. Only regular files are read: a FIFO blocks open() and read() forever, deaf to
Ctrl-C; a device or socket is no file of images, videos or settings (what a path is, when it is something else, is
named). Config YAML is read without aliases and nesting limits (bombs), its values echoed cut short."""

import os
import reprlib
import stat
from typing import Any, Mapping, Optional

import yaml

from .errors import ConfigError

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


def short_value(value: Any, limit: int = 60) -> str:
    """A user's value as error messages echo it: its repr on one line, cut to `limit` characters (a config value can
    be megabytes long; reprlib never builds the whole repr)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 3, 6, 6, 6
MAX_CONFIG_BYTES = 1 << 20  # a jetcam config is a few KB, 32 cameras included; PyYAML takes minutes per 100 MB
MAX_CONFIG_DEPTH = 32  # a jetcam config nests 3 levels (sources: - uri:); 20,000 brackets would overflow the stack


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a nesting limit: a 422-byte file of nested aliases (billion laughs)
    expands to gigabytes, and deep nesting is a RecursionError in the composer. compose_node is the one place
    every node passes through, the same in PyYAML 5 and 6."""

    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        where = "config file %s line %d" % (self.name, event.start_mark.line + 1)
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError("%s: aliases (*%s) are not allowed in a jetcam config; write the value out in full"
                              % (where, short_value(event.anchor, 40)[1:-1]))
        if self._depth >= MAX_CONFIG_DEPTH:
            raise ConfigError("%s: nested too deeply (more than %d levels); a jetcam config nests 3 (check the "
                              "brackets)" % (where, MAX_CONFIG_DEPTH))
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: str) -> Mapping[str, Any]:
    try:
        text = read_regular(path, MAX_CONFIG_BYTES).decode("utf-8")
        loader = _ConfigLoader(text)
        loader.name = path  # the reader of a str names it "<unicode string>"
        try:
            return loader.get_single_data() or {}
        finally:
            loader.dispose()
    except FileNotFoundError as e:
        raise ConfigError("config file not found: %s" % path) from e
    except yaml.YAMLError as e:  # the first line of PyYAML's message may quote a tag of any length
        raise ConfigError("config file %s is not valid YAML: %s" % (path, cut_text(str(e).splitlines()[0]))) from e
    except UnicodeDecodeError as e:
        raise ConfigError("config file %s is not UTF-8 text (%s); save it as UTF-8 YAML" % (path, e.reason)) from e
    except RecursionError as e:  # the depth limit above stops the composer; this is for any other recursion
        raise ConfigError("config file %s is nested too deeply for YAML to read; a jetcam config nests 3 levels"
                          % path) from e
    except NotRegularFileError as e:  # a FIFO would block open() forever
        raise ConfigError("cannot read the config file %s: it is %s, not a regular file; pass a YAML file to "
                          "--config" % (path, e.kind)) from e
    except FileTooLargeError as e:
        raise ConfigError("config file %s is %d KB, more than the %d KB a jetcam config can be; pass a jetcam "
                          "YAML file to --config" % (path, e.size // 1024, e.limit // 1024)) from e
    except OSError as e:  # no permission, an I/O error
        raise ConfigError("cannot read the config file %s (%s); pass a readable YAML file to --config"
                          % (path, e.strerror or e)) from e
    except ValueError as e:  # e.g. an integer of more digits than int() converts (Python 3.11+)
        raise ConfigError("config file %s holds a value YAML cannot convert (%s)" % (path, cut_text(str(e)))) from e


def cut_text(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
