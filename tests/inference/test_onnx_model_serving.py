"""`--model PATH.onnx` served and benchmarked: export-triton's python-variant repository of a user's YOLOv8 file on
the real PyTriton server (predictions as on the cpu backend, no Python-backend stub left behind), its config.pbtxt
for a fixed and a dynamic batch, and `run.py bench` with ONNX Runtime on the CPU as the reference."""

import json
import os
import sys
import time

import pytest

from jetcam_app.cli import main

sys.path.insert(0, os.path.dirname(__file__))
import onnx_files  # noqa: E402
from triton_server import needs_server, needs_video  # noqa: E402

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

NAMES = ["person", "car"]
BOXES = [(100, 200, 300, 400, 0, 0.9), (350, 250, 500, 380, 1, 0.6)]  # letterboxed 640x640 input pixels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {"dynamic": onnx_files.yolov8_onnx(str(folder / "det_dyn.onnx"), BOXES, NAMES, dynamic=True),
            "fixed": onnx_files.yolov8_onnx(str(folder / "det_fixed.onnx"), BOXES, NAMES, dynamic=False)}


def export(model, out, cache):
    code = main(["export-triton", "--model", model, "--variant", "python", "--out", str(out),
                 "--cache-dir", str(cache)])
    assert code == 0
    return os.path.join(str(out), os.path.splitext(os.path.basename(model))[0])


def stubs_serving(repository):
    """Pids of the Python-backend stubs running a model.py of `repository` (their command line names it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if argv and argv[0].endswith("triton_python_backend_stub") and any(repository in a for a in argv[1:]):
            found.append(int(pid))
    return found


def assert_no_stub_left(repository, wait_s=10.0):
    deadline = time.monotonic() + wait_s
    while stubs_serving(repository) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = stubs_serving(repository)
    for pid in left:  # this test's own leftovers only (they serve its temporary repository), by pid
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, "triton_python_backend_stub processes left running after the server stopped: %s" % left


def predictions(folder):
    with open(os.path.join(str(folder), "predictions.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_app(model, out, cache, extra):
    return main(["--source", "sample", "--model", model, "--max-frames", "5", "--headless", "--out", str(out),
                 "--cache-dir", str(cache)] + extra)


@needs_video
@needs_server
def test_python_variant_on_the_real_server_predicts_as_the_cpu_backend(files, tmp_path):
    from jetcam_app.triton.local_server import LocalTritonServer

    repository = str(tmp_path / "repo")
    model_dir = export(files["dynamic"], repository, tmp_path / "cache")
    assert os.path.basename(model_dir) == "det_dyn"
    assert run_app(files["dynamic"], tmp_path / "cpu", tmp_path / "cache", ["--backend", "cpu"]) == 0
    try:
        with LocalTritonServer(repository) as server:  # start() waits until the model is READY
            assert stubs_serving(repository), "the server runs det_dyn without a Python-backend stub?"
            code = run_app(files["dynamic"], tmp_path / "triton", tmp_path / "cache",
                           ["--backend", "triton", "--triton-url", server.grpc_url])
            assert code == 0, server.log_tail()
    finally:
        assert_no_stub_left(repository)
    want, got = predictions(tmp_path / "cpu"), predictions(tmp_path / "triton")
    assert len(want) == 5 and all(len(row["boxes"]) == len(BOXES) for row in want), want  # not vacuous
    assert [r["labels"] for r in want[:1]] == [[0, 1]] and want[0]["names"] == NAMES
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a["source"], a["frame"], a["labels"], a["names"]) == (b["source"], b["frame"], b["labels"], b["names"])
        assert len(a["boxes"]) == len(b["boxes"])
        for box_a, box_b in zip(a["boxes"], b["boxes"]):
            assert all(abs(u - v) <= 1e-3 for u, v in zip(box_a, box_b)), (a, b)
        assert all(abs(u - v) <= 1e-3 for u, v in zip(a["scores"], b["scores"])), (a, b)
    summary = json.loads((tmp_path / "triton" / "summary.json").read_text())
    assert summary["backend"] == "triton" and summary["engine_dropped_frames"] == 0


def config_lines(model_dir):
    with open(os.path.join(model_dir, "config.pbtxt")) as f:
        return [line.strip() for line in f]


def file_dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("kind, max_batch, input_dims, output_dims", [
    ("fixed", 0, "dims: [ 1, 3, 640, 640 ]", [1, 6, 64]),
    ("dynamic", 8, "dims: [ 3, 640, 640 ]", [6, 64])], ids=["fixed_batch", "dynamic_batch"])
def test_export_triton_config_for_a_fixed_and_a_dynamic_batch(files, tmp_path, kind, max_batch, input_dims,
                                                              output_dims):
    model_dir = export(files[kind], tmp_path / "repo", tmp_path / "cache")
    lines = config_lines(model_dir)
    name = os.path.splitext(os.path.basename(files[kind]))[0]
    assert 'name: "%s"' % name in lines and 'backend: "python"' in lines
    assert "max_batch_size: %d" % max_batch in lines
    assert [line for line in lines if line.startswith("dims:")] == [
        input_dims, "dims: [ %s ]" % ", ".join(str(d) for d in output_dims)]
    # the output dims are the file's own (less the batch axis where the server batches)
    (output,) = onnx.load(files[kind]).graph.output
    dims = file_dims(output)
    assert (dims if max_batch == 0 else dims[1:]) == output_dims and (max_batch == 0) == isinstance(dims[0], int)
    assert ("dynamic_batching {" in lines) == (max_batch > 0)  # Triton refuses dynamic batching without a batch
    assert sorted(os.listdir(os.path.join(model_dir, "1"))) == ["model.onnx", "model.py"]
    served = onnx.load(os.path.join(model_dir, "1", "model.onnx")).graph  # what model.py runs takes these dims
    assert file_dims(served.input[0])[1:] == [3, 640, 640] and file_dims(served.output[0])[1:] == [6, 64]
    assert isinstance(file_dims(served.input[0])[0], int) == (max_batch == 0)


@needs_video
def test_bench_reference_is_onnx_runtime_on_the_cpu_and_the_onnxruntime_row_is_exact(files, tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", "--model", files["dynamic"], "--backends", "cpu,onnxruntime", "--frames", "4",
                 "--warmup", "1", "--source", "sample", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    for name in ("report.md", "report.html", "results.json"):
        assert os.path.isfile(str(out / name)), name
    rows = {r["backend"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert sorted(rows) == ["cpu", "onnxruntime"]
    assert all(r["status"] == "ok" for r in rows.values()), [(r["backend"], r.get("error")) for r in rows.values()]
    assert rows["cpu"]["reference"] and not rows["onnxruntime"]["reference"]
    md = (out / "report.md").read_text()
    answer1 = next(line for line in md.splitlines() if line.startswith("- **1."))
    assert "ONNX Runtime on the CPU" in answer1 and "cpu fp32 (reference)" in answer1
    assert "ONNX Runtime on the CPU" in (out / "report.html").read_text()
    diff, task = rows["onnxruntime"]["diff"], rows["onnxruntime"]["task_diff"]
    assert diff["frames"] == 4 and diff["non_finite"] == 0
    assert diff["max_abs"] <= 1e-6 and diff["mean_abs"] <= 1e-6 and diff["cosine_min"] >= 1 - 1e-6
    assert rows["onnxruntime"]["tolerance"]["ok"]
    assert task["reference_boxes"] == 4 * len(BOXES) and task["matched"] == task["reference_boxes"]
    assert task["missing"] == task["extra"] == 0 and task["label_agreement"] == 1.0 and task["min_iou"] >= 1 - 1e-6
    assert task["score_diff_max"] <= 1e-6
