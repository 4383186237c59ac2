"""The Triton backend: the model core runs on a Triton Inference Server (gRPC or HTTP), several requests in flight.

Preprocessing, decoding and NMS stay in the app. A server that goes away mid-run is handled like a camera
that does: the frames whose requests fail are dropped and counted, the engine reconnects with backoff while
the run goes on, and summary.json reports both (engine_dropped_frames, engine_reconnects).
"""

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...errors import BackendUnavailable, EngineConnectionError, first_line
from .base import Capabilities, Engine

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'tritonclient[grpc,http]' (or pip install -e '.[triton]')"
SERVE_HINT = "start the server (docs/triton.md) or pass --triton-url"
WIRE_TYPES = {torch.float32: "FP32", torch.float16: "FP16"}
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
# gRPC status codes and client-side messages that mean the server or the network went away, not a bad request.
LOST_MARKERS = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "Socket closed", "failed to connect",
                "Connection refused", "connection reset", "timed out", "not found", "not ready")


def _import_client(protocol: str):
    try:
        if protocol == "http":
            import tritonclient.http as client
        else:
            import tritonclient.grpc as client
        from tritonclient.utils import InferenceServerException
    except ImportError as e:
        raise BackendUnavailable("triton", "the tritonclient module does not import (%s)" % (str(e).splitlines()[0] or e),
                                 INSTALL_HINT) from e
    return client, InferenceServerException


def parse_url(url: str) -> Tuple[str, str]:
    """("grpc" or "http", "host:port") from grpc://host:port, http://host:port or a bare host:port (gRPC)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "grpc", url
    if scheme not in ("grpc", "http"):
        raise EngineConnectionError("--triton-url %s: use grpc://host:8001 or http://host:8000" % url)
    return scheme, rest.rstrip("/")


class Request:
    """One frame's request: filled by the client's callback (gRPC) or on result() (HTTP); dropped when never sent."""

    def __init__(self, dropped: bool = False, frames: int = 1):
        self.frames = frames  # the batch's frames: all of them are dropped with the request
        self.done = threading.Event()
        self.sent = time.perf_counter()
        self.received = self.sent
        self.outputs = None  # type: Any
        self.error = None  # type: Optional[BaseException]
        self.pending = None  # type: Any  # the HTTP client's InferAsyncRequest
        self.dropped = dropped
        if dropped:
            self.done.set()

    def complete(self, outputs: Any, error: Optional[BaseException]) -> None:
        self.received = time.perf_counter()
        self.outputs, self.error = outputs, error
        self.done.set()


class TritonEngine(Engine):
    """A tritonclient InferenceServerClient on the model the app exported with `run.py export-triton`."""

    name = "triton"
    capabilities = Capabilities(device="remote", precisions=("fp32", "fp16"), accelerated=True, asynchronous=True)

    @classmethod
    def check_available(cls) -> None:
        try:
            _import_client("grpc")
        except BackendUnavailable:
            _import_client("http")  # either protocol will do; the URL's is checked when the engine is made

    def __init__(self, config):
        super().__init__(config)
        self.protocol, self.address = parse_url(config.triton_url)
        self.client_module, self.server_error = _import_client(self.protocol)
        self.input_dtype = torch.float16 if config.precision == "fp16" else torch.float32
        # Preprocessing (resize, normalise) and decoding with NMS run on this machine's GPU where it has one: on its
        # CPU they cost more than the round trip. The preprocessed tensor goes out from host memory.
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        self.timeout_s = float(config.triton_timeout_s)
        self.client = None  # type: Any
        self.model = ""
        self.input_name = "input"
        self.output_names = []  # type: List[str]
        self.reconnects = 0
        self.dropped_frames = 0
        self.timeouts = 0
        self._down_since = None  # type: Optional[float]
        self._next_attempt = 0.0
        self._backoff_s = BACKOFF_FIRST_S

    # -- connection ---------------------------------------------------------------------------------------

    def _new_client(self):
        if self.protocol == "http":
            return self.client_module.InferenceServerClient(self.address, concurrency=8, connection_timeout=self.timeout_s,
                                                            network_timeout=self.timeout_s)
        return self.client_module.InferenceServerClient(self.address)

    def _call(self, client, method: str, *args):
        """A control call with the request timeout (gRPC takes it per call, HTTP from the client)."""
        if self.protocol == "grpc":
            return getattr(client, method)(*args, client_timeout=self.timeout_s)
        return getattr(client, method)(*args)

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except (self.server_error, OSError) as e:
                log.debug("triton: closing the client: %s", e)
            self.client = None

    def load(self, network: torch.nn.Module, example: torch.Tensor, model_name: str) -> None:
        from ...triton.export import triton_model_name

        start = time.perf_counter()
        self.model = self.config.triton_model or triton_model_name(model_name, self.config.precision)
        self.input_name = tuple(getattr(network, "input_names", None) or ("input",))[0]
        self.output_names = list(getattr(network, "output_names", None) or ())
        url = self.config.triton_url
        try:
            self.client = self._new_client()
            live = self._call(self.client, "is_server_live")
        except (self.server_error, OSError) as e:
            raise EngineConnectionError("cannot reach the Triton server at %s (%s); fix: %s"
                                        % (url, first_line(e), SERVE_HINT)) from e
        if not live:
            raise EngineConnectionError("the Triton server at %s is not live; fix: %s" % (url, SERVE_HINT))
        self._check_model(example)
        self.load_seconds = time.perf_counter() - start
        log.info("triton: %s on %s (%s), ready in %.2f s", self.model, url, self.protocol, self.load_seconds)

    def _metadata(self) -> Dict[str, Any]:
        try:
            if self.protocol == "grpc":
                return self.client.get_model_metadata(self.model, as_json=True, client_timeout=self.timeout_s)
            return self.client.get_model_metadata(self.model)
        except self.server_error as e:
            served = []  # type: List[str]
            try:
                index = self.client.get_model_repository_index(as_json=True) if self.protocol == "grpc" \
                    else self.client.get_model_repository_index()
                served = [m.get("name", "?") for m in (index.get("models", []) if isinstance(index, dict) else index)]
            except (self.server_error, OSError):
                pass
            raise EngineConnectionError("the Triton server at %s has no model '%s' ready (%s; it serves: %s); fix: run.py "
                                        "export-triton --model M --out REPO and serve REPO, or pass --triton-model"
                                        % (self.config.triton_url, self.model, first_line(e),
                                           ", ".join(served) or "nothing")) from e

    def _check_model(self, example: torch.Tensor) -> None:
        """The served model's input must take the app's batch (any batch size where dimension 0 is -1)."""
        meta = self._metadata()
        inputs = {i["name"]: i for i in meta.get("inputs", [])}
        want_type = WIRE_TYPES[self.input_dtype]
        want = [int(d) for d in example.shape]
        served = inputs.get(self.input_name)
        shape = [int(d) for d in served["shape"]] if served else []
        matches = served is not None and served["datatype"] == want_type and len(shape) == len(want) and all(
            s in (-1, w) for s, w in zip(shape, want))
        if not matches:
            have = ", ".join("%s %s %s" % (n, i["datatype"], [int(d) for d in i["shape"]]) for n, i in inputs.items())
            raise EngineConnectionError("Triton model '%s' at %s takes %s, but the app sends %s %s %s; fix: re-export it "
                                        "with run.py export-triton for this model and --precision, or pass --triton-model"
                                        % (self.model, self.config.triton_url, have or "no inputs", self.input_name,
                                           want_type, want))
        outputs = [o["name"] for o in meta.get("outputs", [])]
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise EngineConnectionError("Triton model '%s' at %s has outputs %s, the app needs %s; fix: re-export it with "
                                        "run.py export-triton" % (self.model, self.config.triton_url, outputs,
                                                                  self.output_names))
        if not self.output_names:
            self.output_names = outputs

    def _reconnect(self) -> bool:
        """One attempt, at most once per backoff period; True when the server and the model are ready again."""
        now = time.perf_counter()
        if now < self._next_attempt:
            return False
        self._close_client()
        try:
            self.client = self._new_client()
            ready = self._call(self.client, "is_server_ready") and self._call(self.client, "is_model_ready", self.model)
        except (self.server_error, OSError) as e:
            ready = False
            log.debug("triton: reconnect attempt failed: %s", e)
        if ready:
            log.warning("triton: reconnected to %s after %.1f s (%d frames dropped so far)", self.config.triton_url,
                        now - (self._down_since or now), self.dropped_frames)
            self.reconnects += 1
            self._down_since = None
            self._backoff_s = BACKOFF_FIRST_S
            return True
        self._next_attempt = now + self._backoff_s
        self._backoff_s = min(BACKOFF_MAX_S, self._backoff_s * 2)
        return False

    def _lost(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.perf_counter()
            self._next_attempt = self._down_since + BACKOFF_FIRST_S
            self._backoff_s = BACKOFF_FIRST_S * 2
            log.warning("triton: lost the server at %s (%s); dropping frames and reconnecting",
                        self.config.triton_url, first_line(error))

    # -- inference ----------------------------------------------------------------------------------------

    def infer_async(self, batch: torch.Tensor) -> Request:
        """Send the batch (N frames; the exported model accepts up to its max_batch_size) and return at once."""
        if self._down_since is not None and not self._reconnect():
            return Request(dropped=True, frames=int(batch.shape[0]))
        x = batch.detach().to("cpu", self.input_dtype).contiguous().numpy()
        tensor = self.client_module.InferInput(self.input_name, list(x.shape), WIRE_TYPES[self.input_dtype])
        tensor.set_data_from_numpy(x)
        wanted = [self.client_module.InferRequestedOutput(n) for n in self.output_names]
        request = Request(frames=int(x.shape[0]))
        try:
            if self.protocol == "grpc":
                self.client.async_infer(self.model, [tensor], callback=lambda result, error: request.complete(result, error),
                                        outputs=wanted, client_timeout=self.timeout_s)
            else:
                request.pending = self.client.async_infer(self.model, [tensor], outputs=wanted)
        except (self.server_error, OSError) as e:
            self._lost(e)
            request.dropped = True
            request.done.set()
        return request

    def result(self, handle: Request) -> Optional[Tuple[torch.Tensor, ...]]:
        if not handle.dropped and handle.pending is not None:
            try:
                handle.complete(handle.pending.get_result(), None)
            except (self.server_error, OSError) as e:
                handle.complete(None, e)
        elif not handle.dropped and not handle.done.wait(self.timeout_s + 1.0):
            handle.complete(None, TimeoutError("no answer in %.1f s" % (self.timeout_s + 1.0)))
        if handle.error is not None:
            self._failed(handle.error)
            handle.dropped = True
        if handle.dropped:
            self.dropped_frames += handle.frames
            return None
        return tuple(torch.from_numpy(np.array(handle.outputs.as_numpy(n))).to(self.device)
                     for n in self.output_names)

    def _failed(self, error: BaseException) -> None:
        text = "%s %s" % (error.status() if isinstance(error, self.server_error) else "", error)
        if "DEADLINE_EXCEEDED" in text or isinstance(error, TimeoutError):
            self.timeouts += 1
            log.warning("triton: a request took over %.1f s (--triton-timeout); its frame is dropped", self.timeout_s)
        elif isinstance(error, OSError) or any(m.lower() in text.lower() for m in LOST_MARKERS):
            self._lost(error)
        else:
            raise EngineConnectionError("Triton model '%s' at %s refused a request: %s"
                                        % (self.model, self.config.triton_url, first_line(error))) from error

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outputs = self.result(self.infer_async(batch))
        if outputs is None:
            raise EngineConnectionError("the Triton server at %s did not answer; fix: %s"
                                        % (self.config.triton_url, SERVE_HINT))
        return outputs

    def server_counters(self) -> Optional[Dict[str, int]]:
        from ...triton.statistics import counters

        if self.protocol == "grpc":
            raw = self.client.get_inference_statistics(self.model, as_json=True, client_timeout=self.timeout_s)
        else:
            raw = self.client.get_inference_statistics(self.model)
        return counters(raw, self.model)

    def health(self) -> Dict[str, Any]:
        return {"engine_reconnects": self.reconnects, "engine_dropped_frames": self.dropped_frames,
                "engine_timeouts": self.timeouts}

    def close(self) -> None:
        self._close_client()
