"""One benchmark row in its own process: load one (backend, precision), time it on the shared inputs, save its outputs.

Run by jetcam_app.bench.command as `python -m jetcam_app.bench.worker JOB.json`. The job names the model, the
engine config, the inputs file (decoded frames + CPU fp32 preprocessed batches, made once by the parent),
the shared network weights and the folder to write into. It writes there, whatever happens:

- result.json: status ok | unavailable | failed | interrupted, the error, load time, per-frame times, memory;
- out_K.npy: output K of the network for every frame (N, ...), float32, written frame by frame (no RSS cost);
- predictions.jsonl: the postprocessed result of every frame (computed from those outputs), written by the app's
  own PredictionLog, so it reads exactly like a run's.

Progress goes to stdout as `@progress PHASE DONE TOTAL` lines that the parent turns into a progress bar.
For tests only: JETCAM_BENCH_CRASH makes a row crash, abort or hang (see _test_fault).
"""

import json
import os
import resource
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple  # noqa: F401 - Tuple in type comments

import numpy as np

from ..output.logs import PredictionLog
from ..types import Frame

CRASH_ENV = "JETCAM_BENCH_CRASH"
SAMPLE_INTERVAL_S = 0.05


def _mb(n_bytes: float) -> float:
    return round(n_bytes / 2 ** 20, 1)


class MemorySampler:
    """Peaks of process RSS, system RAM in use and this process's GPU memory, read off the stats poller
    (jtop on a Jetson, whose GPU shares the RAM; NVML on a desktop; psutil always) by a thread, never
    on the timed path."""

    def __init__(self, device: str) -> None:
        from ..stats import StatsPoller

        self.poller = StatsPoller(interval_s=SAMPLE_INTERVAL_S, device=device)
        first = self.poller.latest()
        self.ram_used_start_mb = round(first.ram_used_mb, 1)
        self.rss_peak_mb = 0.0
        self.ram_used_peak_mb = 0.0
        self.gpu_peak_mb = None  # type: Optional[float]
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]

    def sample(self) -> None:
        s = self.poller.latest()
        self.rss_peak_mb = max(self.rss_peak_mb, round(s.rss_mb, 1))
        self.ram_used_peak_mb = max(self.ram_used_peak_mb, round(s.ram_used_mb, 1))
        if s.gpu_mb is not None:
            self.gpu_peak_mb = max(self.gpu_peak_mb or 0.0, round(s.gpu_mb, 1))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def start(self) -> None:
        self.poller.start()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.sample()
        self.poller.stop()

    def describe(self) -> Dict[str, Any]:
        return {"provider": self.poller.provider, "skipped": dict(self.poller.skipped)}


class OutputWriter:
    """out_K.npy files with a header for all N frames, filled one frame at a time (nothing kept in memory)."""

    def __init__(self, folder: str, frames: int):
        self.folder = folder
        self.frames = frames
        self._files = []  # type: List[Any]
        self.shapes = []  # type: List[Tuple[int, ...]]

    def write(self, outputs) -> None:
        arrays = [t.detach().float().cpu().numpy() for t in outputs]
        if not self._files:
            for k, array in enumerate(arrays):
                f = open(os.path.join(self.folder, "out_%d.npy" % k), "wb")
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                          "shape": (self.frames,) + tuple(array.shape)}
                np.lib.format.write_array_header_1_0(f, header)
                self._files.append(f)
                self.shapes.append(tuple(array.shape))
        for f, array in zip(self._files, arrays):
            f.write(np.ascontiguousarray(array, dtype=np.float32).tobytes())

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


def _progress(phase: str, done: int, total: int) -> None:
    sys.stdout.write("@progress %s %d %d\n" % (phase, done, total))
    sys.stdout.flush()


def _test_fault(backend: str, precision: str, out_dir: str) -> None:
    """Tests only: JETCAM_BENCH_CRASH="backend/precision:MODE[,...]" makes that row fail for real before it
    loads anything: raise (an exception), abort (the process dies without a result) or hang (sleeps until
    Ctrl-C, after writing OUT/hanging so the test knows when to send it)."""
    for spec in filter(None, os.environ.get(CRASH_ENV, "").split(",")):
        target, _, mode = spec.partition(":")
        if target != "%s/%s" % (backend, precision):
            continue
        if mode == "abort":
            os.abort()
        if mode == "hang":
            with open(os.path.join(out_dir, "hanging"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3600)
        raise RuntimeError("crash injected by %s for a test" % CRASH_ENV)


def _build(job: Dict[str, Any]):
    from ..inference.adapters.base import build_core, create_adapter
    from ..config import EngineConfig, ModelConfig
    from ..inference.engines.base import create_engine
    from ..inference.safe_load import load_tensors

    adapter = create_adapter(ModelConfig(**job["model"]))
    start = time.perf_counter()
    network = build_core(adapter)
    # The parent saved one set of weights so random-weight runs are identical in every process.
    network.load_state_dict(load_tensors(job["weights_path"]))
    network.eval()
    build_s = time.perf_counter() - start
    engine = create_engine(EngineConfig(**job["engine"]), onnx_file=adapter.onnx_file is not None)
    return adapter, network, engine, build_s


def _app_stages(adapter, engine, cuda_graph: bool):
    """The app's inference stages (the pipeline's own), one frame at a time and one in flight (the bench times each
    frame on its own)."""
    from ..inference.fused_stages import make_stages

    return make_stages(adapter=adapter, engine=engine, cuda_graph=cuda_graph, outline_boxes=False, in_flight=1)


def sampled_device(backend: str) -> str:
    """Where the memory sampler looks: the backend's declared device; one that picks at load time (ONNX Runtime's
    providers) or runs on a server is sampled on the GPU only where torch sees one."""
    from ..inference.engines.base import capabilities_of

    device = capabilities_of(backend).device
    if device not in ("cpu", "cuda"):  # "auto" (ONNX Runtime's providers) or "remote" (a server: the app's own GPU)
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _run(job: Dict[str, Any], result: Dict[str, Any]) -> None:
    import psutil
    import torch

    _test_fault(job["engine"]["backend"], job["engine"]["precision"], job["out_dir"])
    inputs = np.load(job["inputs_path"])
    frames = int(inputs["frames"])
    warmup = int(job["warmup"])
    adapter, network, engine, build_s = _build(job)
    result["network_build_s"] = round(build_s, 3)
    result["device"] = str(engine.device)
    result["input_dtype"] = str(engine.input_dtype).replace("torch.", "")
    _progress("load", 0, 1)
    example = adapter.example_input(engine.device, engine.input_dtype)
    start = time.perf_counter()
    engine.load(network, example, adapter.name)
    engine.synchronize()
    result["load_s"] = round(time.perf_counter() - start, 3)
    result["rss_after_load_mb"] = _mb(psutil.Process().memory_info().rss)
    cuda = engine.device.type == "cuda"
    if cuda:
        result["gpu_name"] = torch.cuda.get_device_name(engine.device)
        torch.cuda.reset_peak_memory_stats(engine.device)

    def batch_of(i: int) -> torch.Tensor:
        return torch.from_numpy(inputs["batch_%05d" % i]).to(engine.device, engine.input_dtype)

    warm = batch_of(0)
    for i in range(warmup):
        engine.infer(warm)
        engine.synchronize()
        _progress("warm-up", i + 1, warmup)

    # Pass 1, engine only, on the identical CPU-preprocessed inputs: these outputs feed the numeric diff.
    writer = OutputWriter(job["out_dir"], frames)
    engine_ms = []  # type: List[float]
    counters_before = engine.server_counters()
    pass_start = time.perf_counter()
    busy_s = 0.0
    try:
        with PredictionLog(os.path.join(job["out_dir"], "predictions.jsonl")) as predictions:
            for i in range(frames):
                batch = batch_of(i)
                engine.synchronize()
                t0 = time.perf_counter()
                outputs = engine.infer(batch)
                engine.synchronize()
                t1 = time.perf_counter()
                engine_ms.append((t1 - t0) * 1000.0)
                busy_s += t1 - t0
                writer.write(outputs)
                image = inputs["image_%05d" % i]
                predictions.write(i, adapter.postprocess(outputs, image.shape[:2]))
                _progress("engine", i + 1, frames)
    finally:
        writer.close()
        result["engine_ms"] = [round(v, 4) for v in engine_ms]
        result["output_shapes"] = [list(s) for s in writer.shapes]
    result["engine_pass_wall_s"] = round(time.perf_counter() - pass_start, 3)
    if counters_before is not None:  # a server's engine: its round trip split by the server's own statistics
        from ..triton.statistics import round_trip_split

        result["round_trip_split"] = round_trip_split(counters_before, engine.server_counters() or {}, engine_ms)
    result["engine_busy_s"] = round(busy_s, 4)

    # Pass 2, end to end per frame through the app's own stages (eager, or the fused CUDA graph with
    # --cuda-graph): pre, infer and post as the app times them, end to end by the wall clock.
    stages = _app_stages(adapter, engine, bool(job.get("cuda_graph", False)))
    first = inputs["image_00000"]
    for i in range(warmup):
        stages.finish(stages.submit([Frame(first, i, 0.0, time.perf_counter())]))
        engine.synchronize()
    pre_ms, infer_ms, post_ms, e2e_ms = [], [], [], []  # type: List[float], List[float], List[float], List[float]
    e2e_busy_s = 0.0
    pass_start = time.perf_counter()
    for i in range(frames):
        image = inputs["image_%05d" % i]  # read from the file outside the timed region
        t0 = time.perf_counter()
        processed, = stages.finish(stages.submit([Frame(image, i, 0.0, t0)]))  # a batch of one, as one source's
        engine.synchronize()
        t3 = time.perf_counter()
        pre_ms.append(processed.timing.pre_ms)
        infer_ms.append(processed.timing.infer_ms)
        post_ms.append(processed.timing.post_ms)
        e2e_ms.append((t3 - t0) * 1000.0)
        e2e_busy_s += t3 - t0
        _progress("end-to-end", i + 1, frames)
    result["e2e_pass_wall_s"] = round(time.perf_counter() - pass_start, 3)
    result["e2e_busy_s"] = round(e2e_busy_s, 4)
    for key, values in (("pre_ms", pre_ms), ("infer_ms", infer_ms), ("post_ms", post_ms), ("e2e_ms", e2e_ms)):
        result[key] = [round(v, 4) for v in values]
    if cuda:
        result["torch_gpu_peak_mb"] = _mb(torch.cuda.max_memory_allocated(engine.device))
    result["frames"] = frames
    result["warmup"] = warmup
    memory = getattr(engine, "memory_mb", None)
    if memory is not None and memory() is not None:
        result["engine_memory_mb"] = round(float(memory()), 1)
    engine.close()
    result["status"] = "ok"


def _write_result(path: str, result: Dict[str, Any]) -> None:
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    from ..errors import BackendUnavailable, ConfigError, EngineConnectionError, JetcamError

    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = json.load(f)
    os.makedirs(job["out_dir"], exist_ok=True)
    result = {"backend": job["engine"]["backend"], "precision": job["engine"]["precision"],
              "status": "failed", "pid": os.getpid()}  # type: Dict[str, Any]
    sampler = MemorySampler(sampled_device(job["engine"]["backend"]))
    result["ram_used_start_mb"] = sampler.ram_used_start_mb
    sampler.start()
    code = 1
    try:
        _run(job, result)
        code = 0
    except (BackendUnavailable, ConfigError, EngineConnectionError) as e:  # no server reachable: unavailable here
        result["status"] = "unavailable"
        result["error"] = str(e)
        code = 3
    except KeyboardInterrupt:
        result["status"] = "interrupted"
        result["error"] = "interrupted (Ctrl-C)"
        code = 130
    except JetcamError as e:
        result["error"] = "%s: %s" % (type(e).__name__, e)
        result["traceback"] = traceback.format_exc()
    except Exception as e:  # noqa: BLE001 - any crash becomes this row's `failed` status; the bench goes on
        result["error"] = "%s: %s" % (type(e).__name__, e)
        result["traceback"] = traceback.format_exc()
        sys.stderr.write(result["traceback"])
    finally:
        sampler.stop()
        result["rss_peak_mb"] = sampler.rss_peak_mb
        result["ru_maxrss_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        result["ram_used_peak_mb"] = sampler.ram_used_peak_mb
        result["ram_used_delta_mb"] = round(sampler.ram_used_peak_mb - sampler.ram_used_start_mb, 1)
        result["gpu_process_peak_mb"] = sampler.gpu_peak_mb
        result["memory_provider"] = sampler.describe()
        _write_result(os.path.join(job["out_dir"], "result.json"), result)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
