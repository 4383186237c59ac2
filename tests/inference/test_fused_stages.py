"""The device path with static shapes (the fused CUDA graph's pre/post): static NMS against torchvision, each
adapter's static postprocessing against its dynamic one, and on CUDA the fused graph against the eager stages."""

import dataclasses

import numpy as np
import pytest
import torch
import torchvision

from jetcam_app.config import load_config
from jetcam_app.inference.adapters.base import build_core, create_adapter
from jetcam_app.inference.adapters.static_nms import settled, static_batched_nms
from jetcam_app.inference.engines.base import create_engine
from jetcam_app.inference.fused_stages import FusedStages, default_in_flight, make_stages
from jetcam_app.inference.stages import EagerStages
from jetcam_app.output.overlay import Overlay
from jetcam_app.types import Frame

MODELS = ("nanodet", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "mobilenet_v2")


def clustered_boxes(generator, k):
    centres = torch.rand(int(torch.randint(1, 20, (1,), generator=generator)), 2, generator=generator) * 500
    picks = torch.randint(0, len(centres), (k,), generator=generator)
    c = centres[picks] + torch.randn(k, 2, generator=generator) * 15
    wh = torch.rand(k, 2, generator=generator) * 80 + 10
    return torch.cat([c - wh / 2, c + wh / 2], 1)


def test_static_nms_keeps_what_torchvision_keeps():
    generator = torch.Generator().manual_seed(0)
    for trial in range(200):
        k = int(torch.randint(1, 400, (1,), generator=generator))
        boxes = clustered_boxes(generator, k)
        scores, labels = torch.rand(k, generator=generator), torch.randint(0, 3, (k,), generator=generator)
        order = scores.argsort(descending=True)
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        valid = scores > 0.2
        expected = torch.nonzero(valid).squeeze(1)[
            torchvision.ops.batched_nms(boxes[valid], scores[valid], labels[valid], 0.5)].sort().values
        keep, stable = static_batched_nms(boxes, scores, labels, valid, 0.5, rounds=k + 1)
        assert bool(stable.all())
        assert torch.equal(torch.nonzero(keep).squeeze(1), expected), trial


def test_static_nms_reports_when_rounds_are_too_few():
    # a chain: each box overlaps the next, so every second one survives, settled one link per round
    boxes = torch.tensor([[float(i * 10), 0.0, float(i * 10 + 30), 10.0] for i in range(12)])
    scores = torch.linspace(1.0, 0.5, 12)
    labels, valid = torch.zeros(12, dtype=torch.int64), torch.ones(12, dtype=torch.bool)
    early, stable = static_batched_nms(boxes, scores, labels, valid, 0.3, rounds=2)
    keep, stable_late = static_batched_nms(boxes, scores, labels, valid, 0.3, rounds=13)
    assert not bool(settled(early, stable, 100)) and bool(settled(keep, stable_late, 100))
    assert bool(settled(early, stable, 1))  # the best box is final after any round
    expected = torchvision.ops.nms(boxes, scores, 0.3).sort().values
    assert torch.equal(torch.nonzero(keep).squeeze(1), expected)


def test_static_nms_over_a_batch_decides_each_frame_as_alone():
    """Leading batch dimensions: every frame's NMS, settled flags and packed rows as if run alone (chains too long
    to settle in the rounds given included)."""
    from jetcam_app.inference.adapters.static_nms import nms_and_pack

    generator = torch.Generator().manual_seed(1)
    k, frames = 64, []
    for f in range(5):
        boxes = clustered_boxes(generator, k)
        scores = torch.rand(k, generator=generator).sort(descending=True).values
        labels = torch.randint(0, 3, (k,), generator=generator)
        if f == 2:  # a chain of one class: each box overlaps the next, not settled in 3 rounds
            boxes = torch.tensor([[float(i * 10), 0.0, float(i * 10 + 30), 10.0] for i in range(k)])
            scores, labels = torch.linspace(1.0, 0.5, k), torch.zeros(k, dtype=torch.int64)
        frames.append((boxes, scores, labels, scores > 0.2))
    batch = [torch.stack(parts) for parts in zip(*frames)]
    keep, stable = static_batched_nms(*batch, 0.3, rounds=3)
    above = torch.stack([valid.sum() for *_, valid in frames])
    packed = nms_and_pack(batch[0], batch[0] * 2, batch[1], batch[2], batch[3], above, 0.3, 20)
    exact = []
    for f, (boxes, scores, labels, valid) in enumerate(frames):
        alone_keep, alone_stable = static_batched_nms(boxes, scores, labels, valid, 0.3, rounds=3)
        assert torch.equal(keep[f], alone_keep) and torch.equal(stable[f], alone_stable)
        alone = nms_and_pack(boxes, boxes * 2, scores, labels, valid, valid.sum(), 0.3, 20)
        assert torch.equal(packed[f], alone), f
        assert torch.equal(settled(keep, stable, 20)[f], settled(alone_keep, alone_stable, 20))
        exact.append(bool(alone[0, 1]))
    assert not exact[2] and any(exact)  # both kinds were in the batch


@pytest.mark.parametrize("name", MODELS)
def test_static_postprocess_equals_postprocess(name, photos):
    adapter = create_adapter(load_config(None, {"model.name": name, "model.random_weights": name != "nanodet"}).model)
    network = build_core(adapter).eval()
    for image in (photos["astronaut"], photos["coffee"], photos["motorcycle_left"]):
        with torch.inference_mode():
            outputs = network(adapter.prepare_tensor(torch.from_numpy(image), torch.float32))
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            expected = adapter.postprocess(outputs, image.shape[:2])
            got = adapter.unpack(adapter.static_postprocess(outputs, image.shape[:2]).numpy())
        assert got is not None
        if adapter.task == "classification":
            np.testing.assert_array_equal(got.class_ids, expected.class_ids)
            np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
        else:
            assert len(got) == len(expected)
            np.testing.assert_array_equal(got.labels, expected.labels)
            np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3)
            np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
    if name == "ssd300_vgg16":
        assert len(expected) > 10  # random SSD300 weights keep many boxes: the NMS had work to do


@pytest.mark.parametrize("name", ("nanodet", "ssd300_vgg16"))
def test_tracked_static_postprocess_is_exact_above_the_shown_threshold(name, photos):
    """Tracking lowers the adapter's threshold to track_low_thresh (0.1) and holds the device result exact only
    above --score-threshold (shown_exact): those boxes equal postprocess()'s; the low band is a subset of its. Two
    of NanoDet's photos have more low-band candidates than STATIC_TOPK: exact in all of it, they would fall back."""
    from jetcam_app.analytics.wiring import shown_exact

    config = load_config(None, {"model.name": name, "model.random_weights": name != "nanodet", "tracker.enabled": True})
    adapter = create_adapter(dataclasses.replace(config.model, score_threshold=0.1))
    network = build_core(adapter).eval()
    assert shown_exact(adapter, config).exact_threshold == config.model.score_threshold
    low_band = shown_total = 0
    for image in (photos["astronaut"], photos["coffee"], photos["motorcycle_left"]):
        with torch.inference_mode():
            outputs = network(adapter.prepare_tensor(torch.from_numpy(image), torch.float32))
            expected = adapter.postprocess(outputs, image.shape[:2])
            got = adapter.unpack(adapter.static_postprocess(outputs, image.shape[:2]).numpy())
        assert got is not None
        if name == "nanodet" and image is not photos["coffee"]:  # exact in all the low band too: no fallback saved
            adapter.exact_threshold = 0.1
            assert adapter.unpack(adapter.static_postprocess(outputs, image.shape[:2]).numpy()) is None
            adapter.exact_threshold = config.model.score_threshold
        shown, want = got.scores > adapter.exact_threshold, expected.scores > adapter.exact_threshold
        np.testing.assert_array_equal(got.labels[shown], expected.labels[want])
        np.testing.assert_allclose(got.boxes[shown], expected.boxes[want], atol=1e-3)
        rows = {(int(l), round(float(v), 5)) for l, v in zip(expected.labels, expected.scores)}
        assert {(int(l), round(float(v), 5)) for l, v in zip(got.labels, got.scores)} <= rows
        low_band, shown_total = low_band + int((~shown).sum()), shown_total + int(shown.sum())
    assert shown_total > 0
    assert low_band > 0 or name != "nanodet"  # its real weights give the tracker's band boxes (random SSD's: none)


def test_prepare_tensor_matches_cuda_preprocess_recipe(photos):
    adapter = create_adapter(load_config(None, {"model.name": "nanodet"}).model)
    image = photos["astronaut"][:300]  # not square: letterbox padding
    x = adapter.prepare_tensor(torch.from_numpy(image), torch.float32)
    cpu = adapter.preprocess(image, torch.device("cpu"), torch.float32)  # OpenCV resizes uint8 on the CPU
    assert x.shape == cpu.shape == (1, 3, 416, 416)
    assert float((x - cpu).abs().max()) < 0.05  # normalised units: the uint8 rounding of OpenCV's resize


def test_eager_stages_where_no_graph():
    config = load_config(None, {"model.name": "nanodet", "engine.backend": "cpu"})
    adapter = create_adapter(config.model)
    assert isinstance(make_stages(adapter, create_engine(config.engine), config.pipeline.cuda_graph), EagerStages)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fused_graph_equals_eager_stages(name, precision, photos, monkeypatch):
    import jetcam_app.inference.fused_stages as graphed

    monkeypatch.setattr(graphed, "GPU_OUTLINES_FROM", 0)  # every frame's outlines drawn by the GPU
    config = load_config(None, {"model.name": name, "model.random_weights": name != "nanodet",
                                "engine.backend": "cuda", "engine.precision": precision})
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    engine.load(build_core(adapter), adapter.example_input(), name)
    fused = make_stages(adapter, engine, config.pipeline.cuda_graph, outline_boxes=True)  # on by default
    assert isinstance(fused, FusedStages)
    eager = EagerStages(adapter, engine)
    assert fused.in_flight == default_in_flight(0, torch.cuda.get_device_properties(0).is_integrated)
    # more frames than slots, so every slot carries a second frame; at most fused.in_flight, as in the pipeline
    frames = [photos["astronaut"], photos["coffee"], photos["astronaut"], photos["motorcycle_left"]]
    frames = (frames * fused.in_flight)[:fused.in_flight + 2]
    in_flight, originals = [], {}
    for i, image in enumerate(frames + [None] * (fused.in_flight - 1)):  # a None: finish one more
        if image is not None:
            if i % 2:  # every other frame as a source decoding into the page-locked pool gives it
                pinned = fused.host_buffers.take(image.shape)
                pinned[...] = image
                assert fused.host_buffers.storage_of(pinned) is not None
                image = pinned
            frame = Frame(image, i, 0.0, 0.0)
            originals[i] = image.copy()
            in_flight.append((frame, fused.submit([frame])))
            if len(in_flight) < fused.in_flight:
                continue
        frame, work = in_flight.pop(0)
        got = fused.finish(work)[0]
        expected = eager.finish(eager.submit([frame]))[0]
        assert got.timing.infer_ms > 0
        if adapter.task == "classification":
            np.testing.assert_array_equal(got.result.class_ids, expected.result.class_ids)
        else:
            assert len(got.result) == len(expected.result)
            np.testing.assert_array_equal(got.result.labels, expected.result.labels)
            np.testing.assert_allclose(got.result.boxes, expected.result.boxes, atol=0.05)
            # the graph drew the outlines on a copy that came back; the host would draw the same pixels
            assert got.outlined and got.frame.image is not frame.image
            np.testing.assert_array_equal(frame.image, originals[frame.index])
            outlined = originals[frame.index].copy()
            overlay = Overlay()
            overlay._metrics(*outlined.shape[:2])
            overlay._draw_outlines(outlined, np.rint(got.result.boxes).astype(np.int32), got.result.labels)
            np.testing.assert_array_equal(got.frame.image, outlined)
    assert not in_flight and len(fused._shapes) == 3  # one graph per frame size, reused for the repeated one
    engine.close()


def test_frames_in_flight():
    """pipeline.in_flight when set; else 4 graph slots on a desktop GPU, 2 on a Jetson (its RAM is the GPU's)."""
    assert default_in_flight(0, integrated=False) == 4 and default_in_flight(0, integrated=True) == 2
    assert default_in_flight(3, integrated=False) == 3 and default_in_flight(1, integrated=True) == 1
    config = load_config(None, {"model.name": "nanodet", "engine.backend": "cpu", "pipeline.in_flight": 3})
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    assert make_stages(adapter, engine, True, in_flight=3).in_flight == 1  # the CPU stages do the work in submit()


@pytest.mark.parametrize("error", [RuntimeError("operation not permitted when stream is capturing"),
                                   NotImplementedError()], ids=["old-torch", "model-without-static-hooks"])
def test_capture_failure_falls_back_to_eager_stages(monkeypatch, photos, caplog, error):
    """An older torch that cannot capture an operation, or a model without static postprocessing (the base
    adapter's hooks raise NotImplementedError): a warning, then every frame through the eager stages."""
    import jetcam_app.inference.fused_stages as graphed

    class Uncapturable(graphed.BatchGraph):
        def __init__(self, *args):
            raise error

    monkeypatch.setattr(graphed, "BatchGraph", Uncapturable)
    config = load_config(None, {"model.name": "nanodet", "engine.backend": "cpu"})
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    engine.load(build_core(adapter), adapter.example_input(), "nanodet")
    stages = FusedStages(adapter, engine)
    eager = EagerStages(adapter, engine)
    with caplog.at_level("WARNING"):
        for i, image in enumerate((photos["astronaut"], photos["coffee"])):
            got = stages.finish(stages.submit([Frame(image, i, 0.0, 0.0)]))[0]
            expected = eager.finish(eager.submit([Frame(image, i, 0.0, 0.0)]))[0]
            np.testing.assert_array_equal(got.result.labels, expected.result.labels)
            np.testing.assert_allclose(got.result.boxes, expected.result.boxes)
    assert sum("could not be captured" in r.message for r in caplog.records) == 1


@pytest.mark.needs_cuda
def test_the_cuda_engine_captures_no_graph_of_its_own_where_the_fused_graph_runs():
    config = load_config(None, {"model.name": "nanodet", "engine.backend": "cuda", "engine.precision": "fp16"})
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    engine.load(build_core(adapter), adapter.example_input(), "nanodet")
    assert isinstance(make_stages(adapter, engine, config.pipeline.cuda_graph), FusedStages)
    assert engine._graph is None  # the fused graph captures forward() itself: a second graph would hold memory
    batch = adapter.example_input(engine.device, engine.input_dtype)
    eager = [t.clone() for t in engine.infer(batch)]
    engine.capture_graph()  # only on request, for a caller that times the engine alone
    assert engine._graph is not None
    for got, expected in zip(engine.infer(batch), eager):
        torch.testing.assert_close(got, expected)
    engine.close()
