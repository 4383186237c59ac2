"""Weight resolution for the adapters: --weights PATH, models/<name>.pth, torchvision's cache or download, or random."""

import contextlib
import os
import pickle
import socket
import threading
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Optional

import torch

from ...config import ROOT, ModelConfig
from ...errors import WeightsError, first_line
from ..safe_load import load_tensors
from .base import find_weights

MODELS_DIR = os.path.join(ROOT, "models")
# Models whose weights come with an installed package or the set-up, so they run without a network.
OFFLINE_MODELS = ("efficientnet_lite0", "nanodet")
# Set JETCAM_OFFLINE=1 to never try a download (air-gapped machines, tests).
OFFLINE_ENV = "JETCAM_OFFLINE"
PROBE_TIMEOUT_S = 3.0  # bounds DNS + TCP connect, so an offline machine fails in seconds, not minutes
READ_TIMEOUT_S = 10.0  # a download that stalls this long is abandoned (torch.hub removes its partial file)
RANDOM_SEED = 0  # random weights are seeded, so two --random-weights runs give identical predictions

StateDict = Dict[str, torch.Tensor]


def load_weights_file(path: str) -> StateDict:
    """A state dict from `path`, loaded with weights_only=True; a checkpoint's 'state_dict' or 'model' is unwrapped."""
    try:
        data = load_tensors(path)
    except Exception as e:  # noqa: BLE001 - garbage bytes make the unpickler raise anything (IndexError, KeyError...)
        # weights_only=True refuses pickled objects (a whole saved model, or not a torch file at all)
        reason = ("not a tensors-only file: torch.load(weights_only=True) refused it"
                  if isinstance(e, pickle.UnpicklingError) else "%s: %s" % (type(e).__name__, first_line(e)))
        raise WeightsError("cannot load weights from %s (%s); pass a state dict saved with "
                           "torch.save(model.state_dict(), PATH), or --random-weights for timing only"
                           % (path, reason)) from e
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError("%s does not hold a state dict of tensors; save one with "
                           "torch.save(model.state_dict(), PATH)" % path)
    return data


def load_into(module: torch.nn.Module, state_dict: StateDict, source: str, model_name: str) -> None:
    """Strict load; a mismatch names the file and the first missing, unexpected or mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or misshaped:
        raise WeightsError("weights %s do not fit %s (missing %s, unexpected %s, wrong shape %s); pass weights "
                           "saved from that model, or drop --weights"
                           % (source, model_name, missing[:3], unexpected[:3], misshaped[:3]))
    module.load_state_dict(state_dict, strict=True)


@contextlib.contextmanager
def seeded_init(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Build modules under a fixed seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def hub_cache_path(url: str) -> str:
    """Where torch.hub keeps (or would keep) the file downloaded from `url` ($TORCH_HOME is honoured)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(url).path))


def local_candidates(model_name: str, url: Optional[str] = None) -> List[str]:
    """models/<name>.pth, then models/<the file name of the official download>."""
    names = [model_name + ".pth"]
    if url:
        names.append(os.path.basename(urllib.parse.urlparse(url).path))
    return [os.path.join(MODELS_DIR, n) for n in names]


def offline_hint(model_name: str, url: Optional[str] = None) -> str:
    where = " or ".join(os.path.relpath(p, ROOT) for p in local_candidates(model_name, url))
    return ("put the weights file at %s or pass --weights PATH; offline, %s work without a download; "
            "--random-weights runs anyway (timing only)" % (where, " and ".join(OFFLINE_MODELS)))


def probe_download(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """None when the download host (or the HTTPS proxy) accepts a TCP connection within timeout_s, else why not.

    Runs in a daemon thread because name resolution ignores socket timeouts and can hang for minutes offline.
    """
    if os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on"):
        return "%s is set" % OFFLINE_ENV
    parsed = urllib.parse.urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    target = urllib.parse.urlparse(proxy) if proxy else parsed
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    outcome = []  # type: List[str]

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append("")
        except OSError as e:
            outcome.append("%s unreachable: %s" % (host, e))

    worker = threading.Thread(target=connect, name="weights-probe", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    if not outcome:
        return "%s did not answer within %.0f s" % (host, timeout_s)
    return outcome[0] or None


@contextlib.contextmanager
def _socket_timeout(timeout_s: float) -> Iterator[None]:
    # torch.hub's urlopen takes no timeout; the process default bounds each read instead.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def torchvision_state_dict(model_name: str, tv_weights: Any, check_hash: bool = False) -> StateDict:
    """torchvision's weights from its cache, else downloaded (fails fast offline); WeightsError with the fix."""
    url = tv_weights.url
    cached = hub_cache_path(url)
    if not os.path.isfile(cached):
        reason = probe_download(url)
        if reason:
            raise WeightsError("no weights for %s: not in torchvision's cache (%s) and no download (%s); %s"
                               % (model_name, cached, reason, offline_hint(model_name, url)))
    try:
        with _socket_timeout(READ_TIMEOUT_S):
            return tv_weights.get_state_dict(progress=False, check_hash=check_hash, weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        # torch.hub downloads into a temporary file and moves it only when complete, so nothing partial is left.
        raise WeightsError("could not get the weights of %s from %s (%s); %s"
                           % (model_name, url, first_line(e), offline_hint(model_name, url))) from e


def resolve_state_dict(config: ModelConfig, model_name: str, tv_weights: Any = None,
                       check_hash: bool = False) -> Optional[StateDict]:
    """The state dict to load, or None for random weights.

    Order: --random-weights; --weights PATH (also looked up in models/); models/<name>.pth or the official
    file name in models/; torchvision's cache or a download (when `tv_weights`, a torchvision weights enum).
    """
    if config.random_weights:
        return None
    if config.weights:
        return load_weights_file(find_weights(config.weights, MODELS_DIR) or config.weights)
    url = tv_weights.url if tv_weights is not None else None
    for candidate in local_candidates(model_name, url):
        if os.path.isfile(candidate):
            return load_weights_file(candidate)
    if tv_weights is None:
        raise WeightsError("no weights for %s; %s" % (model_name, offline_hint(model_name)))
    return torchvision_state_dict(model_name, tv_weights, check_hash=check_hash)


def describe_source(config: ModelConfig, model_name: str, tv_weights: Any = None) -> str:
    """Where resolve_state_dict takes the weights from, for the overlay and the summary."""
    if config.random_weights:
        return "RANDOM WEIGHTS"
    if config.weights:
        return config.weights
    url = tv_weights.url if tv_weights is not None else None
    for candidate in local_candidates(model_name, url):
        if os.path.isfile(candidate):
            return os.path.relpath(candidate, ROOT)
    return "torchvision %s" % tv_weights if tv_weights is not None else "default weights"
