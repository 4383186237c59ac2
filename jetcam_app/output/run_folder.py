"""Where a run's results go: --out as given, or a new runs/<name>, runs/<name>2, ... (Ultralytics' habit)."""

import errno
import logging
import os
from typing import Iterable, Optional, Tuple

try:
    import fcntl
except ImportError:  # Windows: no flock; two runs at once in one folder are not prevented there
    fcntl = None  # type: ignore[assignment]

from ..config import OutputConfig
from ..errors import OutputError

log = logging.getLogger(__name__)
RUNS_DIR = "runs"
LOCK_FILE = ".jetcam.lock"  # held by the run writing the folder; holds its pid for the message of a second run
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


class RunFolderLock:
    """One run's hold on its folder: flock on <folder>/.jetcam.lock for the run's life. The OS drops the lock
    when the process dies, so a run killed with SIGKILL leaves a file but no stale lock."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_FILE)
        self._fd = None  # type: Optional[int]

    def acquire(self) -> bool:
        """True when held now; False when another run holds it."""
        if fcntl is None:
            log.info("no fcntl on this system: %s is not locked against a second run at the same time",
                     os.path.dirname(self.path))
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):  # EWOULDBLOCK is EAGAIN on Linux and macOS
                    return False
                log.info("%s cannot be locked (%s): it is not guarded against a second run at the same time",
                         os.path.dirname(self.path), e.strerror or e)  # e.g. NFS without a lock daemon
                return True
            try:  # the holder unlinks the file before it unlocks: a lock on an unlinked file holds nothing
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd
        return True

    def holder(self) -> str:
        """' (pid N)' of the run holding the folder, when it has written it yet."""
        try:
            with open(self.path, encoding="ascii") as f:
                pid = f.read().strip()
        except (OSError, ValueError):
            pid = ""
        return " (pid %s)" % pid if pid.isdigit() else ""

    def release(self) -> None:
        """Idempotent; the file goes first, so a run that opens it afterwards makes and locks a new one."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except OSError as e:  # a folder removed under the run: the lock goes with the descriptor anyway
            log.debug("could not remove %s: %s", self.path, e)
        os.close(self._fd)
        self._fd = None


def _locked(path: str) -> Optional[RunFolderLock]:
    lock = RunFolderLock(_writable(path))
    return lock if lock.acquire() else None


def _in_use(path: str, lock: RunFolderLock) -> OutputError:
    return OutputError("%s is in use by another run%s; use --name/--out or wait" % (path, lock.holder()))


def claim_run_folder(config: OutputConfig, runs_dir: str = RUNS_DIR) -> Tuple[str, RunFolderLock]:
    """The run's folder, created and locked for this run (release the lock when the run ends): config.out_dir as
    given (reused), runs/<name> with exist_ok, else the first of runs/<name>, runs/<name>2, ... that does not exist
    yet. OutputError when --out or --exist-ok's folder is held by another run."""
    try:
        if config.out_dir or config.exist_ok:
            path = config.out_dir or os.path.join(runs_dir, config.name)
            os.makedirs(path, exist_ok=True)
            lock = _locked(path)
            if lock is None:
                raise _in_use(path, RunFolderLock(path))
            return path, lock
        os.makedirs(runs_dir, exist_ok=True)
        base = os.path.join(runs_dir, config.name)
        n = 1
        while True:
            path = base if n == 1 else "%s%d" % (base, n)
            # a folder just made can still be taken by an --exist-ok run before we lock it: then the next number
            lock = _locked(path) if _claim(path) else None
            if lock is not None:
                return path, lock
            n += 1
    except OutputError:
        raise
    except OSError as e:
        where = config.out_dir or runs_dir
        raise OutputError("cannot write to the output folder %s (%s); pass --out DIR with a writable folder"
                          % (where, e.strerror or e)) from e


def resolve_run_folder(config: OutputConfig, runs_dir: str = RUNS_DIR) -> str:
    """claim_run_folder's folder, not held afterwards."""
    path, lock = claim_run_folder(config, runs_dir)
    lock.release()
    return path


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


def prepare_outputs(config: OutputConfig, runs_dir: str = RUNS_DIR) -> Tuple[str, RunFolderLock]:
    """Check the output paths' extensions, then create and lock the run folder: (its path, the lock to release)."""
    check_extension(config.record, "--record")
    check_extension(config.save_input, "--save-input")
    return claim_run_folder(config, runs_dir)
