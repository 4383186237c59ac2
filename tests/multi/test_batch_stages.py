"""The batch path gives each frame what the one-frame path gives it: eager torch, ONNX Runtime padded to a
fixed batch, and CUDA where there is one."""
import os
import time

import numpy as np
import pytest
import torch

from jetcam_app.config import EngineConfig, load_config
from jetcam_app.inference.adapters.base import build_core
from jetcam_app.inference.adapters.nanodet import NanoDetAdapter
from jetcam_app.inference.engines.base import create_engine
from jetcam_app.inference.engines.torch_engine import TorchCpuEngine
from jetcam_app.inference.stages import EagerStages, batch_example
from jetcam_app.types import Frame

from test_multi_source import make_source, run_sources


def nanodet():
    weights = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models",
                           "nanodet")
    random = not os.path.isfile(os.path.join(weights, "nanodet.json"))
    overrides = {"model.name": "nanodet", "model.score_threshold": 0.3, "model.random_weights": random}
    if not random:
        overrides["model.weights"] = weights
    return NanoDetAdapter(load_config(overrides=overrides).model)


def frames_of(photos):
    # different sizes in one batch: each frame is letterboxed on its own
    images = [photos["astronaut"], photos["coffee"], photos["motorcycle_left"]]
    return [Frame(np.ascontiguousarray(image), i, i / 30.0, time.perf_counter()) for i, image in enumerate(images)]


def one_by_one(adapter, engine, frames):
    stages = EagerStages(adapter, engine)
    return [stages.finish(stages.submit([frame]))[0].result for frame in frames]


def assert_same_detections(batched, single, atol_px=1e-2, score_atol=1e-4):
    assert len(batched) == len(single)
    for b, s in zip(batched, single):
        assert b.labels.tolist() == s.labels.tolist()
        np.testing.assert_allclose(b.boxes, s.boxes, atol=atol_px)
        np.testing.assert_allclose(b.scores, s.scores, atol=score_atol)


def load(adapter, backend, batch, tmp_path, cuda_graph=False, **engine):
    engine = create_engine(EngineConfig(backend=backend, threads=1, cache_dir=str(tmp_path / "cache"), **engine))
    engine.load(build_core(adapter), batch_example(adapter, batch), adapter.name)
    if cuda_graph:
        engine.capture_graph()  # the engine's own graph: a fixed batch, padded by the batch stages
    return engine


def test_eager_torch_batch_equals_one_frame(photos, tmp_path):
    adapter = nanodet()
    engine = load(adapter, "cpu", 1, tmp_path)
    frames = frames_of(photos)
    stages = EagerStages(adapter, engine, max_batch=3)
    done = stages.finish(stages.submit(frames))
    assert [d.frame.index for d in done] == [0, 1, 2] and stages.padded_frames == 0
    assert sum(len(d.result) for d in done) > 0 or adapter.random_weights
    assert_same_detections([d.result for d in done], one_by_one(adapter, engine, frames))
    assert all(d.timing.infer_ms == done[0].timing.infer_ms for d in done)  # the whole batch's inference, each


class FixedBatchCpu(TorchCpuEngine):
    """torch on the CPU declaring a fixed batch, as TensorRT, torch2trt and --cuda-graph engines do."""

    def fixed_batch(self):
        return 4

    def infer(self, batch):
        assert batch.shape[0] == 4, "a fixed-shape engine got a batch of %d" % batch.shape[0]
        return super().infer(batch)


def test_fixed_shape_engines_get_padded_batches(photos, tmp_path):
    adapter = nanodet()
    engine = FixedBatchCpu(EngineConfig(threads=1))
    engine.load(build_core(adapter), batch_example(adapter, 4), adapter.name)
    frames = frames_of(photos)
    stages = EagerStages(adapter, engine, max_batch=4)
    done = stages.finish(stages.submit(frames))
    assert stages.padded_frames == 1 and len(done) == 3
    assert_same_detections([d.result for d in done], one_by_one(adapter, load(adapter, "cpu", 1, tmp_path), frames))
    with pytest.raises(Exception, match="pipeline.max_batch 8"):
        EagerStages(adapter, engine, max_batch=8)


def test_onnxruntime_on_the_cpu_takes_any_batch(photos, tmp_path):
    pytest.importorskip("onnxruntime")
    adapter = nanodet()
    batched_engine = load(adapter, "onnxruntime", 4, tmp_path)
    assert batched_engine.fixed_batch() == 0 and "_Nx3x416x416_" in os.path.basename(batched_engine.onnx_path)
    single_engine = load(adapter, "onnxruntime", 1, tmp_path)
    assert single_engine.fixed_batch() == 1 and "_1x3x416x416_" in os.path.basename(single_engine.onnx_path)
    frames = frames_of(photos)
    stages = EagerStages(adapter, batched_engine, max_batch=4)
    for k in (3, 1):  # batches of any size, no padding
        done = stages.finish(stages.submit(frames[:k]))
        assert_same_detections([d.result for d in done], one_by_one(adapter, single_engine, frames[:k]))
    assert stages.padded_frames == 0


def test_whole_run_on_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    sources = [(name, make_source("test://320x240@30?frames=%d" % n)) for name, n in (("a", 7), ("b", 11), ("c", 3))]
    summary, lines, _ = run_sources(tmp_path, sources, **{"engine.backend": "onnxruntime", "pipeline.max_batch": 4,
                                                          "engine.cache_dir": str(tmp_path / "cache")})
    for name, n in (("a", 7), ("b", 11), ("c", 3)):
        assert lines[name] == [(i, i) for i in range(n)]
    assert summary["padded_batch_slots"] == 0


@pytest.mark.needs_cuda
@pytest.mark.parametrize("precision, graph", [("fp32", False), ("fp16", False), ("fp16", True)])
def test_cuda_batch_equals_one_frame(photos, tmp_path, precision, graph):
    adapter = nanodet()
    frames = frames_of(photos)
    batched = load(adapter, "cuda", 4, tmp_path, precision=precision, cuda_graph=graph)
    single = load(adapter, "cuda", 1, tmp_path, precision=precision, cuda_graph=graph)
    stages = EagerStages(adapter, batched, max_batch=4)
    done = stages.finish(stages.submit(frames))
    assert stages.padded_frames == (1 if graph else 0)
    reference = one_by_one(adapter, single, frames)
    if precision == "fp32":
        assert_same_detections([d.result for d in done], reference)
    else:  # fp16 kernels may differ with the batch size: the same objects, boxes within a pixel
        assert_same_detections([d.result for d in done], reference, atol_px=1.0, score_atol=2e-3)
    torch.cuda.synchronize()
