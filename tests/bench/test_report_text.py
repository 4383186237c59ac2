"""The bench report's wording without running a bench: accelerated backends not run, and the frames it shows."""

import numpy as np

from jetcam_app.bench.plots import busiest_frames
from jetcam_app.bench.report import not_run_accelerated, what_was_timed


def test_not_run_accelerated_uses_capabilities_and_says_why():
    rows = [{"backend": "cpu", "precision": "fp32", "status": "ok", "reference": True},
            {"backend": "cpu", "precision": "fp16", "status": "unavailable", "error": "fp16 runs on CUDA only"},
            {"backend": "trt", "precision": "fp16", "status": "unavailable", "error": "no tensorrt module\nmore"}]
    lines = not_run_accelerated(rows)
    assert "trt fp16: not run (unavailable: no tensorrt module)" in lines
    assert any(line.startswith("onnxruntime: not run (not asked for") for line in lines)
    assert not any(line.startswith("cpu") or line.startswith("cuda") for line in lines)  # not accelerated


def test_what_was_timed_names_the_fused_graph_either_way():
    assert what_was_timed({"options": {}}).endswith("+ sink). The fused CUDA graph was not timed: CUDA rows ran "
                                                    "the eager stages (pre, infer, post one after the other), as "
                                                    "`run.py --backend cuda --no-cuda-graph` does.")
    assert what_was_timed({"options": {"cuda_graph": True}}).endswith(
        "+ sink). CUDA rows replayed the fused CUDA graph, as `run.py --backend cuda` does by default.")


def test_busiest_frames_are_the_ones_with_most_detections():
    samples = {i: np.zeros((4, 4, 3), np.uint8) for i in range(10)}
    rows = [{"key": "cpu_fp32", "reference": True}, {"key": "onnxruntime_fp32"}]
    counts = [0, 3, 0, 0, 7, 0, 1, 0, 7, 0]
    predictions = {"cpu_fp32": [{"frame": i, "labels": [1] * n} for i, n in enumerate(counts)]}
    assert list(busiest_frames(rows, predictions, samples, "detection", 3)) == [1, 4, 8]
    assert list(busiest_frames(rows, predictions, samples, "classification", 3)) == [0, 4, 9]
    assert list(busiest_frames(rows, predictions, {2: samples[2]}, "detection", 3)) == [2]
