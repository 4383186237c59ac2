"""The Triton backend: the model runs on a Triton Inference Server (gRPC or HTTP), several requests in flight.

What crosses the wire is the served model's (export-triton --input / --output, read from its config): the
preprocessed tensor or the resized uint8 frame (or its JPEG) in; the core's raw outputs (decoded and NMS'd here)
or the final detections out (triton/wire.py turns frames and answers into what the stages need). On the server's
host, --triton-shm puts the tensors in shared memory instead (triton/shm.py). A server that goes away mid-run is
handled like a camera that does: the frames whose requests fail are dropped and counted, the engine reconnects with
backoff while the run goes on, and summary.json reports both (engine_dropped_frames, engine_reconnects).
"""

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...errors import BackendUnavailable, EngineConnectionError, first_line
from ...triton.wire import jpeg_batch, outputs_bytes, payload_bytes
from .base import Capabilities, Engine

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'tritonclient[grpc,http]' (or pip install -e '.[triton]')"
SERVE_HINT = "start the server (docs/triton.md) or pass --triton-url"
WIRE_TYPES = {torch.float32: "FP32", torch.float16: "FP16", torch.uint8: "UINT8"}
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

    def __init__(self, dropped: bool = False, frames: int = 1, slot: Any = None):
        self.frames = frames  # the batch's frames: all of them are dropped with the request
        self.slot = slot  # its shared-memory slot (triton/shm.py), or None: over the wire
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
        self.served = None  # type: Any  # triton/served_check.ServedModel, once loaded
        self.codec = None  # type: Any  # triton/wire.FrameCodec for a model that takes frames or gives detections
        self.shm_kind = config.triton_shm
        self.shm = None  # type: Any  # triton/shm.SharedMemoryPool
        self.shm_note = None  # type: Optional[str]  # why shared memory is not used, when it was asked for
        self.wire_counts = {"requests": 0, "frames": 0, "sent_bytes": 0, "received_bytes": 0, "shm_requests": 0}
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

    def _call(self, client, method: str, *args, **kwargs):
        """A control call with the request timeout (gRPC takes it per call, HTTP from the client)."""
        if self.protocol == "grpc":
            return getattr(client, method)(*args, client_timeout=self.timeout_s, **kwargs)
        return getattr(client, method)(*args, **kwargs)

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
        if self.shm_kind != "none":
            self._open_shm(int(example.shape[0]))
        self.load_seconds = time.perf_counter() - start
        wire = self.served.wire
        log.info("triton: %s on %s (%s; %s in, %s out%s), ready in %.2f s", self.model, url, self.protocol, wire.input,
                 wire.output, ", %s shared memory" % self.shm.kind if self.shm is not None else "", self.load_seconds)

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
        """The served model must take what the app sends (triton/served_check.py): its wire format, names, shapes."""
        from ...triton.served_check import check_served, config_parameters

        meta = self._metadata()
        try:
            if self.protocol == "grpc":
                config = self.client.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s)
            else:
                config = self.client.get_model_config(self.model)
        except self.server_error as e:
            raise EngineConnectionError("cannot read the config of Triton model '%s' at %s (%s); fix: %s"
                                        % (self.model, self.config.triton_url, first_line(e), SERVE_HINT)) from e
        self.served = check_served(meta, config_parameters(config), example.shape, WIRE_TYPES[self.input_dtype],
                                   self.input_name, self.output_names, self.model, self.config.triton_url)
        self.input_name = self.served.input_name
        self.output_names = list(self.served.output_names)

    def served_adapter(self, adapter) -> Any:
        """A model that takes frames or answers detections (export-triton --input uint8|jpeg, --output detections):
        the adapter as the stages should use it (triton/wire.py: the codec's preprocess and postprocess), after
        checking the served NMS keeps what the app keeps; None for the core alone (float in, raw out)."""
        from ...triton.wire import CodecAdapter, FrameCodec, check_nms

        wire = self.served.wire
        if wire.input == "float" and wire.output == "raw":
            return None
        if wire.output == "detections":
            check_nms(wire, adapter.config, self.model, self.config.triton_url)
        self.codec = FrameCodec(adapter, wire, self.device, self.input_dtype)
        return CodecAdapter(adapter, self.codec)

    # -- shared memory ------------------------------------------------------------------------------------

    def _open_shm(self, max_batch: int) -> None:
        """--triton-shm: register regions with the server; where it cannot, the reason is noted once (shm.open_pool)."""
        from ...triton.shm import open_pool

        call = lambda method, *a, **kw: self._call(self.client, method, *a, **kw)  # noqa: E731
        self.shm, note = open_pool(self.shm_kind, call, self.protocol, self.config.triton_url, self.address,
                                   self.served, max_batch)
        if note:
            self._no_shm(note)

    def _no_shm(self, reason: str) -> None:
        self.shm = None
        self.shm_note = reason
        log.warning("triton: --triton-shm %s not used: %s; the tensors go over the network", self.shm_kind, reason)

    def _close_shm(self) -> None:
        if self.shm is not None:
            try:
                self.shm.close()
            except (self.server_error, OSError) as e:
                log.warning("triton: releasing shared memory: %s", first_line(e))

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
        if ready and self.shm is not None:
            try:  # a restarted server has forgotten the registrations
                self.shm.reregister()
            except (self.server_error, OSError) as e:
                self._close_shm()
                self._no_shm("registering it again after the reconnect failed (%s)" % first_line(e))
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

    def _as_array(self, batch: Any) -> np.ndarray:
        """The batch as the served input's host array: float in the precision's type, uint8 frames, JPEG bytes."""
        if self.served.input_type in ("UINT8", "BYTES"):
            if batch.is_floating_point():  # a preprocessed tensor (run.py bench's engine pass), not frames
                raise EngineConnectionError(
                    "Triton model '%s' at %s takes frames (export-triton --input %s), not the preprocessed tensor; "
                    "fix: for run.py bench serve an export with --input float --output raw (--name M_raw) and pass "
                    "--triton-model M_raw" % (self.model, self.config.triton_url, self.served.wire.input))
            frames = batch.detach().to("cpu", torch.uint8).contiguous().numpy()
            return jpeg_batch(frames) if self.served.input_type == "BYTES" else frames
        return batch.detach().to("cpu", self.input_dtype).contiguous().numpy()

    def infer_async(self, batch: Any) -> Request:
        """Send the batch (N frames; the exported model accepts up to its max_batch_size) and return at once."""
        if self._down_since is not None and not self._reconnect():
            return Request(dropped=True, frames=int(batch.shape[0]))
        x = self._as_array(batch)
        tensor = self.client_module.InferInput(self.input_name, list(x.shape), self.served.input_type)
        wanted = [self.client_module.InferRequestedOutput(n) for n in self.output_names]
        slot = self.shm.acquire() if self.shm is not None else None
        if slot is not None:
            self.shm.bind(slot, tensor, x, wanted)
            self.wire_counts["shm_requests"] += 1
        else:
            tensor.set_data_from_numpy(x)
            self.wire_counts["sent_bytes"] += payload_bytes(x)
        self.wire_counts["requests"] += 1
        self.wire_counts["frames"] += int(x.shape[0])
        request = Request(frames=int(x.shape[0]), slot=slot)
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
            self._release(request)
        return request

    def _release(self, request: Request) -> None:
        """The request's slot back to the pool; one whose request failed is retired until a reconnect (a server that
        timed out may still write into it)."""
        if request.slot is not None and self.shm is not None:
            if request.error is None and not request.dropped:
                self.shm.release(request.slot)
            else:
                self.shm.retire(request.slot)
        request.slot = None

    def result(self, handle: Request) -> Optional[Tuple[torch.Tensor, ...]]:
        if not handle.dropped and handle.pending is not None:
            try:
                handle.complete(handle.pending.get_result(), None)
            except (self.server_error, OSError) as e:
                handle.complete(None, e)
        elif not handle.dropped and not handle.done.wait(self.timeout_s + 1.0):
            handle.complete(None, TimeoutError("no answer in %.1f s" % (self.timeout_s + 1.0)))
        try:
            if handle.error is not None:
                self._failed(handle.error)
                handle.dropped = True
            if handle.dropped:
                self.dropped_frames += handle.frames
                return None
            arrays = self._outputs(handle)
        finally:
            self._release(handle)
        # raw outputs go where the adapter decodes them; the server's detections are read on the host
        device = torch.device("cpu") if self.served.wire.output == "detections" else self.device
        return tuple(torch.from_numpy(a).to(device) for a in arrays)

    def _outputs(self, handle: Request) -> List[np.ndarray]:
        if handle.slot is not None and self.shm is not None:
            from ...triton.shm import output_shapes

            return self.shm.read(handle.slot, output_shapes(handle.outputs, self.output_names, self.protocol))
        arrays = [np.array(handle.outputs.as_numpy(n)) for n in self.output_names]
        self.wire_counts["received_bytes"] += outputs_bytes(arrays)
        return arrays

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
                "engine_timeouts": self.timeouts, "engine_wire": self.wire_report()}

    def wire_report(self) -> Dict[str, Any]:
        """What crossed the wire: the served format, tensor bytes a frame each way (0 through shared memory)."""
        from ...triton.shm import summary

        counts = dict(self.wire_counts)
        frames = max(1, counts["frames"])
        report = {"input": self.served.wire.input if self.served else None,
                  "output": self.served.wire.output if self.served else None,
                  "sent_bytes_per_frame": round(counts["sent_bytes"] / frames, 1),
                  "received_bytes_per_frame": round(counts["received_bytes"] / frames, 1),
                  "inexact_frames": self.codec.inexact_frames if self.codec is not None else 0}
        report.update(counts)
        report.update(summary(self.shm, self.shm_note))
        return report

    def close(self) -> None:
        self._close_shm()
        self._close_client()
