"""The fused batch graph gives each frame what the eager batch stages give it (CUDA), and its pure logic: which
padded batch sizes are captured, and how a batch of mixed frame shapes is split (anywhere)."""
import time

import cv2
import numpy as np
import pytest
import torch

from jetcam_app.config import EngineConfig, load_config
from jetcam_app.inference.adapters.base import build_core, create_adapter
from jetcam_app.inference.engines.base import create_engine
from jetcam_app.inference.fused_stages import FusedStages, make_stages
from jetcam_app.inference.graph_parts import batch_body, group_by_shape, padded_size, padded_sizes
from jetcam_app.inference.stages import EagerStages, batch_example, split_outputs
from jetcam_app.sources.synthetic import CELL_PX, INDEX_BITS
from jetcam_app.types import Classification, Frame

from index_model import IndexAdapter
from test_batch_stages import nanodet
from conftest import write_index_video
from test_multi_source import make_source, run_sources

CUDA_GRAPH = {"engine.backend": "cuda", "engine.precision": "fp32", "pipeline.cuda_graph": True}


def test_padded_sizes_are_powers_of_two_and_the_largest_batch():
    assert padded_sizes(1) == [1]
    assert padded_sizes(4) == [1, 2, 4]
    assert padded_sizes(6) == [1, 2, 4, 6]
    assert padded_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert padded_sizes(0) == [1]
    sizes = padded_sizes(6)
    assert [padded_size(n, sizes) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]
    with pytest.raises(ValueError, match="larger than the largest"):
        padded_size(7, sizes)


def test_frames_are_grouped_by_shape_in_order_of_first_sight():
    a, b, c = (720, 1280, 3), (480, 640, 3), (240, 320, 3)
    assert group_by_shape([a, b, a, c, b, a]) == [(a, [0, 2, 5]), (b, [1, 4]), (c, [3])]
    assert group_by_shape([a]) == [(a, [0])]
    assert group_by_shape([]) == []


def test_eager_batch_stages_where_no_fused_graph():
    adapter = nanodet()
    engine = create_engine(EngineConfig(backend="cpu", threads=1))
    engine.load(build_core(adapter), batch_example(adapter, 2), adapter.name)
    for cuda_graph in (True, False):  # the CPU engine cannot be fused, whatever pipeline.cuda_graph says
        stages = make_stages(adapter, engine, cuda_graph, 2)
        assert type(stages) is EagerStages
        stages.prepare((240, 320, 3))  # nothing to capture; the multi-source pipeline calls it for every source


def test_the_graph_body_gives_each_row_what_one_frame_gives(photos):
    """The captured computation, run eagerly on the CPU: a batch of 4 rows of which 3 hold frames (the padding row
    holds an earlier frame); each frame's unpacked row, and the dynamic postprocessing of its slice of the outputs
    (the fallback), equal the same recipe run on that frame alone."""
    adapter = nanodet()
    engine = create_engine(EngineConfig(backend="cpu", threads=1))
    engine.load(build_core(adapter), batch_example(adapter, 4), adapter.name)
    frames = photo_frames(photos, 4, size=(640, 480))
    device_in = torch.from_numpy(np.stack([f.image for f in frames[::-1]]))  # the last row: the padding
    outputs, packed = batch_body(adapter, engine.infer, torch.float32, device_in, 4, (480, 640))
    assert packed.shape[0] == 4 and all(o.shape[0] == 4 for o in outputs)
    found = 0
    for row in range(3):
        alone = engine.infer(adapter.prepare_tensor(device_in[row], torch.float32))
        expected = adapter.postprocess(alone, (480, 640))
        for got in (adapter.unpack(packed[row].numpy()), adapter.postprocess(split_outputs(outputs, row), (480, 640))):
            assert got is not None and len(got) == len(expected)
            np.testing.assert_array_equal(got.labels, expected.labels)
            np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
            np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)
        found += len(expected)
    assert found > 0 or adapter.random_weights


@pytest.mark.parametrize("name", ["nanodet", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"])
def test_batched_static_steps_give_each_frame_the_bits_one_frame_gives(photos, name):
    """A detector's batched preprocessing and static postprocessing (one set of kernels for the batch): each row
    equals, bit for bit, the same step run on that frame alone."""
    if name == "nanodet":
        adapter = nanodet()
    else:
        adapter = create_adapter(load_config(None, {"model.name": name, "model.random_weights": True}).model)
    assert adapter.batched_static
    engine = create_engine(EngineConfig(backend="cpu", threads=1))
    engine.load(build_core(adapter), batch_example(adapter, 3), adapter.name)
    frames = photo_frames(photos, 3, size=(640, 480))
    device_in = torch.from_numpy(np.stack([f.image for f in frames]))
    batch_in = adapter.prepare_tensor(device_in, torch.float32)
    outputs = engine.infer(batch_in)
    packed = adapter.static_postprocess_batch(outputs, (480, 640))
    for row in range(3):
        assert torch.equal(batch_in[row:row + 1], adapter.prepare_tensor(device_in[row], torch.float32))
        assert torch.equal(packed[row], adapter.static_postprocess(split_outputs(outputs, row), (480, 640)))


def photo_frames(photos, n, size=None, start=0):
    """n frames: the photos (flipped and shifted for variety), each resized to `size` (w, h) when given."""
    names = ["astronaut", "coffee", "motorcycle_left"]
    frames = []
    for k in range(n):
        image = photos[names[k % len(names)]]
        if k // len(names) % 2:
            image = image[:, ::-1]
        image = np.roll(image, 7 * k, axis=1)
        if size is not None:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        frames.append(Frame(np.ascontiguousarray(image), start + k, 0.0, time.perf_counter()))
    return frames


def cuda_pair(name, precision, max_batch):
    overrides = {"engine.backend": "cuda", "engine.precision": precision}
    if name == "nanodet":
        adapter = nanodet()
    else:
        adapter = create_adapter(load_config(None, dict(overrides, **{"model.name": name,
                                                                      "model.random_weights": True})).model)
    engine = create_engine(EngineConfig(backend="cuda", precision=precision))
    engine.load(build_core(adapter), batch_example(adapter, max_batch), adapter.name)
    fused = make_stages(adapter, engine, cuda_graph=True, max_batch=max_batch)
    assert isinstance(fused, FusedStages)
    return adapter, engine, fused, EagerStages(adapter, engine, max_batch)


def assert_same_results(got, expected, precision):
    assert [p.frame.index for p in got] == [p.frame.index for p in expected]
    atol_px = 1e-2 if precision == "fp32" else 1.0  # fp16 kernels may differ with the batch size
    for g, e in zip(got, expected):
        assert g.frame is e.frame
        assert g.timing.infer_ms > 0 and g.timing.pre_ms > 0
        assert len(g.result) == len(e.result), g.frame.index
        np.testing.assert_array_equal(g.result.labels, e.result.labels)
        np.testing.assert_allclose(g.result.boxes, e.result.boxes, atol=atol_px)
        np.testing.assert_allclose(g.result.scores, e.result.scores, atol=1e-4 if precision == "fp32" else 2e-3)


def eager_padded(eager, batch, sizes):
    """The eager batch stages' results for `batch` run padded as the fused graph runs it (copies of its last frame),
    so both sides run the network at the same batch size (cuDNN may pick other kernels for another size)."""
    size = padded_size(len(batch), sizes)
    return eager.finish(eager.submit(list(batch) + [batch[-1]] * (size - len(batch))))[:len(batch)]


def run_batches(stages, batches):
    """Submit the batches keeping stages.in_flight in flight (as the pipeline's loop); every batch's results."""
    results, in_flight = [], []
    for batch in batches:
        in_flight.append(stages.submit(batch))
        if len(in_flight) >= stages.in_flight:
            results.append(stages.finish(in_flight.pop(0)))
    results.extend(stages.finish(work) for work in in_flight)
    return results


@pytest.mark.needs_cuda
@pytest.mark.parametrize("name, precision", [("nanodet", "fp32"), ("nanodet", "fp16"), ("ssd300_vgg16", "fp32")])
def test_fused_batches_equal_eager_batches(photos, name, precision):
    adapter, engine, fused, eager = cuda_pair(name, precision, max_batch=8)
    fused.prepare((480, 640, 3))
    assert sorted(k[1] for k in fused._graphs) == [1, 2, 4, 8]
    # batch sizes 1, 3 (padded to 4), 4, 8, and again 3 and 1: every lane carries a second batch
    sizes = [1, 3, 4, 8, 3, 1]
    batches, start = [], 0
    for n in sizes:
        batches.append(photo_frames(photos, n, size=(640, 480), start=start))
        start += n
    got = run_batches(fused, batches)
    for g, batch in zip(got, batches):
        assert_same_results(g, eager_padded(eager, batch, fused.sizes), precision)
    assert fused.padded_frames == 2 * 1  # the two batches of 3
    assert len(fused._graphs) == 4  # one shape, four padded sizes: nothing captured after prepare()
    if name == "nanodet" and not adapter.random_weights:
        assert sum(len(p.result) for batch in got for p in batch) > 0
    engine.close()


def pooled(stages, frame):
    """The frame as a source that decodes into the stages' page-locked buffers hands it out."""
    image = stages.host_buffers.take(frame.image.shape)
    image[...] = frame.image
    return Frame(image, frame.index, frame.timestamp_s, frame.capture_time)


@pytest.mark.needs_cuda
def test_frames_decoded_into_the_pool_go_up_from_where_they_lie(photos):
    """Frames in the pool's page-locked buffers are uploaded without a copy on the inference thread, alone or in a
    batch with ordinary frames, and give what the eager stages give (a view of part of a buffer is copied: see
    test_host_buffers.py)."""
    adapter, engine, fused, eager = cuda_pair("nanodet", "fp16", max_batch=4)
    assert fused.host_buffers is not None
    frames = photo_frames(photos, 8, size=(640, 480))
    batches = [[pooled(fused, f) for f in frames[:3]], [frames[3], pooled(fused, frames[4]), frames[5]],
               [pooled(fused, f) for f in frames[6:]]]
    got = run_batches(fused, batches)
    for g, b in zip(got, batches):
        assert_same_results(g, eager_padded(eager, b, fused.sizes), "fp16")
    assert fused.copied_frames == 2  # frames 3 and 5
    engine.close()


@pytest.mark.needs_cuda
def test_mixed_shapes_in_one_batch(photos):
    adapter, engine, fused, eager = cuda_pair("nanodet", "fp16", max_batch=8)
    wide = photo_frames(photos, 3, size=(1280, 720))
    small = photo_frames(photos, 2, size=(320, 240), start=3)
    natural = photo_frames(photos, 2, start=5)  # the photos' own sizes: astronaut 512x512, coffee 600x400
    batches = [[wide[0], small[0], wide[1], natural[0], small[1], wide[2]], [natural[1], wide[0]]]
    got = run_batches(fused, batches)
    for g, b in zip(got, batches):
        assert_same_results(g, eager.finish(eager.submit(b)), "fp16")
    # one sub-batch per shape, each padded on its own: the 3 wide frames to 4
    assert {k for k in fused._graphs} == {((720, 1280, 3), 4), ((240, 320, 3), 2), ((512, 512, 3), 1),
                                          ((400, 600, 3), 1), ((720, 1280, 3), 1)}
    assert fused.padded_frames == 1
    engine.close()


@pytest.mark.needs_cuda
def test_too_many_shapes_run_eagerly(photos, monkeypatch):
    import jetcam_app.inference.fused_stages as module

    monkeypatch.setattr(module, "MAX_SHAPES", 1)
    adapter, engine, fused, eager = cuda_pair("nanodet", "fp16", max_batch=4)
    first = photo_frames(photos, 2, size=(640, 480))
    mixed = [photo_frames(photos, 1, size=(320, 240), start=2)[0], first[0]]
    got = run_batches(fused, [first, mixed, first])
    for g, b in zip(got, [first, mixed, first]):
        assert_same_results(g, eager.finish(eager.submit(b)), "fp16")
    assert {k[0] for k in fused._graphs} == {(480, 640, 3)}
    engine.close()


@pytest.mark.needs_cuda
def test_inexact_rows_go_through_the_dynamic_postprocess_and_are_counted(photos):
    adapter, engine, fused, eager = cuda_pair("nanodet", "fp16", max_batch=4)
    unpack, calls = adapter.unpack, []

    def every_other_row_inexact(packed):
        calls.append(1)
        return None if len(calls) % 2 else unpack(packed)

    adapter.unpack = every_other_row_inexact
    batches = [photo_frames(photos, 3, size=(640, 480)), photo_frames(photos, 4, size=(640, 480), start=3)]
    got = run_batches(fused, batches)
    adapter.unpack = unpack
    for g, b in zip(got, batches):
        assert_same_results(g, eager_padded(eager, b, fused.sizes), "fp16")
    assert len(calls) == 7 and fused.fallbacks == 4
    engine.close()


class GraphedIndexAdapter(IndexAdapter):
    """The index model with the fused graph's hooks: the index bits read on the device, the sum unpacked on the host
    (counted, so the test sees that the fused path produced every result)."""

    unpacked = 0

    def prepare_tensor(self, image_bgr, dtype):
        half = CELL_PX // 2
        strip = image_bgr[half - 2:half + 2, :INDEX_BITS * CELL_PX].float().reshape(4, INDEX_BITS, CELL_PX, 3)
        bits = strip[:, :, half - 2:half + 2].mean(dim=(0, 2, 3)) > 127
        return bits.to(dtype)[None]

    def static_postprocess(self, outputs, image_hw):
        return outputs[0][0].float()

    def unpack(self, packed):
        GraphedIndexAdapter.unpacked += 1
        return Classification(np.array([int(round(float(packed[0])))], np.int64), np.array([1.0], np.float32), [])


@pytest.mark.needs_cuda
def test_the_multi_source_run_uses_the_fused_graph(tmp_path):
    """Every frame once, in order, paired with its own result, through the fused batch graph end to end."""
    expected = {"a": 9, "b": 5, "c": 12}
    sources = [(name, make_source("test://320x240@30?frames=%d" % n)) for name, n in expected.items()]
    GraphedIndexAdapter.unpacked = 0
    summary, lines, _ = run_sources(tmp_path, sources, GraphedIndexAdapter(), **CUDA_GRAPH, **{"pipeline.max_batch": 3})
    for name, n in expected.items():
        assert lines[name] == [(i, i) for i in range(n)], name
    assert summary["graph_fallbacks"] == 0
    assert GraphedIndexAdapter.unpacked == sum(expected.values())  # every result came from the fused graph


@pytest.mark.needs_cuda
def test_video_sources_decode_into_the_fused_graphs_buffers(tmp_path):
    """Video files decode into the stages' page-locked buffers (no copy on the inference thread), each frame once,
    in order, with its own result; held frames are never overwritten."""
    expected = {"a": 25, "b": 17}
    sources = [(name, make_source(write_index_video(tmp_path / (name + ".mp4"), n_frames=n)))
               for name, n in expected.items()]
    summary, lines, _ = run_sources(tmp_path, sources, GraphedIndexAdapter(), **CUDA_GRAPH, **{"pipeline.max_batch": 2})
    for name, n in expected.items():
        assert lines[name] == [(i, i) for i in range(n)], name
    assert all(source.buffers is not None for _, source in sources)
    # only each video's first frame, read by open() before the pool was given, was copied
    assert summary["copied_frames"] == len(expected)


def test_a_batch_uploads_in_one_call_or_row_by_row_where_torch_refuses(monkeypatch):
    import jetcam_app.inference.graph_parts as fbs

    sources = [torch.full((2, 3), float(i)) for i in range(3)]
    targets = [torch.zeros(2, 3) for _ in range(3)]
    fbs.copy_rows(targets, sources)
    assert all(torch.equal(t, s) for t, s in zip(targets, sources))

    def refuses(*args, **kwargs):
        raise RuntimeError("foreach copy across devices is not supported\nmore")

    monkeypatch.setattr(fbs, "_FOREACH_COPY", refuses)
    targets = [torch.zeros(2, 3) for _ in range(3)]
    fbs.copy_rows(targets, sources)
    assert all(torch.equal(t, s) for t, s in zip(targets, sources)) and fbs._FOREACH_COPY is None
