"""Which cache files and folders may be trusted (owned by us or root, not writable by everyone), and a private fallback folder."""

import logging
import os
import stat
import tempfile
from typing import Optional

from ...errors import EngineBuildError

log = logging.getLogger(__name__)


def _uid() -> Optional[int]:
    return os.getuid() if hasattr(os, "getuid") else None  # Windows: no owners to compare


def untrusted_reason(path: str) -> Optional[str]:
    """Why a cache file or folder must not be loaded from, as ssh judges its keys: owned by another user
    (root excepted), or writable by every user. Group-writable is accepted: Ubuntu's default umask 002 gives
    each user a private group. None when trusted or when there are no owners (Windows)."""
    uid = _uid()
    if uid is None:
        return None
    st = os.stat(path)
    if st.st_uid not in (uid, 0):
        return "owned by another user (uid %d)" % st.st_uid
    if st.st_mode & stat.S_IWOTH:
        return "writable by every user (mode %o)" % stat.S_IMODE(st.st_mode)
    return None


def private_fallback_dir(kind: str) -> str:
    """<tmp>/jetcam-cache-<uid>/<kind>: created 0700 and used only while it is our own private folder;
    anything else at that path (a planted folder, a symlink) is an error, never used."""
    uid = _uid()
    base = os.path.join(tempfile.gettempdir(), "jetcam-cache-%s" % (uid if uid is not None else "user"))
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise EngineBuildError("cannot create the private cache folder %s (%s); set engine.cache_dir (--cache-dir) "
                               "to a folder of yours" % (base, e.strerror or e)) from e
    st = os.lstat(base)
    if uid is not None and (not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077):
        raise EngineBuildError("the cache fallback %s is not a private folder of yours (owner uid %d, mode %o); "
                               "remove it, or set engine.cache_dir (--cache-dir) to a folder of yours"
                               % (base, st.st_uid, stat.S_IMODE(st.st_mode)))
    folder = os.path.join(base, kind)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def usable_cache_dir(cache_dir: str, kind: str) -> str:
    """cache_dir when we can write it and trust it, else the private fallback (with a warning saying why)."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        reason = untrusted_reason(cache_dir)
        if reason is None:
            probe = tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".probe-", delete=True)
            probe.close()
            return cache_dir
    except OSError as e:
        reason = "not writable: %s" % (e.strerror or e)
    fallback = private_fallback_dir(kind)
    log.warning("cache folder %s is %s: using the private folder %s instead; fix: make it a writable folder of "
                "yours or set engine.cache_dir (--cache-dir)", cache_dir, reason, fallback)
    return fallback
