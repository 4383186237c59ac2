"""Where a run's results go: --out as given, or a new runs/<name>, runs/<name>2, ... (Ultralytics' habit)."""

import os
from typing import Iterable, Optional

from ..config import OutputConfig
from ..errors import OutputError

RUNS_DIR = "runs"
VIDEO_EXTENSIONS = (".mp4",)  # what OpenCV's mp4v writer produces


def _writable(path: str) -> str:
    probe = os.path.join(path, ".write-test")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OutputError("cannot write to the output folder %s (%s); pass --out DIR with a writable folder"
                          % (path, e.strerror or e)) from e
    return path


def _claim(path: str) -> bool:
    """Create `path`; False when it already exists (os.mkdir is atomic, so two runs never share a folder)."""
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        return False


def resolve_run_folder(config: OutputConfig, runs_dir: str = RUNS_DIR) -> str:
    """The run's folder, created: config.out_dir as given (reused), runs/<name> with exist_ok, else the first
    of runs/<name>, runs/<name>2, runs/<name>3, ... that does not exist yet."""
    try:
        if config.out_dir:
            os.makedirs(config.out_dir, exist_ok=True)
            return _writable(config.out_dir)
        os.makedirs(runs_dir, exist_ok=True)
        base = os.path.join(runs_dir, config.name)
        if config.exist_ok:
            os.makedirs(base, exist_ok=True)
            return _writable(base)
        n = 1
        while not _claim(base if n == 1 else "%s%d" % (base, n)):
            n += 1
        return _writable(base if n == 1 else "%s%d" % (base, n))
    except OutputError:
        raise
    except OSError as e:
        where = config.out_dir or runs_dir
        raise OutputError("cannot write to the output folder %s (%s); pass --out DIR with a writable folder"
                          % (where, e.strerror or e)) from e


def check_extension(path: Optional[str], flag: str, allowed: Iterable[str] = VIDEO_EXTENSIONS) -> None:
    """An output path whose extension does not match what will be written is a user error naming the right one."""
    if not path:
        return
    allowed = tuple(allowed)
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        right = os.path.splitext(path)[0] + allowed[0]
        raise OutputError("%s %s: this writes an MPEG-4 video, so the name must end in %s; use %s %s"
                          % (flag, path, " or ".join(allowed), flag, right))


def prepare_outputs(config: OutputConfig, runs_dir: str = RUNS_DIR) -> str:
    """Check the output paths' extensions, then create and return the run folder."""
    check_extension(config.record, "--record")
    check_extension(config.save_input, "--save-input")
    return resolve_run_folder(config, runs_dir)
