"""--backend triton against a real Triton server: PyTriton's bundled tritonserver serving export-triton's repository.

That server has only the Python backend, so it serves the `--variant python` repository (ONNX Runtime inside
the server's model.py); NVIDIA's containers serve the `onnx` variant with their ONNX Runtime backend. The server
runs from .venv-triton (made by scripts/setup.sh --test from the system Python); without it these tests skip.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from jetcam_app.cli import main
from jetcam_app.config import ROOT, load_config
from jetcam_app.errors import EngineConnectionError

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")
pytest.importorskip("onnxruntime")

from jetcam_app.triton.local_server import LocalTritonServer, free_port  # noqa: E402
from triton_server import (VIDEO, WEIGHTS_ARGS, engine_for, nanodet_core, needs_server, needs_video,  # noqa: E402
                           rows_by_source, run_app, run_through_an_outage, server_python)

pytestmark = needs_server


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton_repo")
    # the core alone (float in, raw out): what run.py bench compares; test_triton_served.py serves the others
    code = main(["export-triton", "--model", "nanodet", "--variant", "python", "--max-batch-size", "4",
                 "--input", "float", "--output", "raw", "--out", str(repo), "--cache-dir", str(tmp_path_factory.mktemp("cache"))] + WEIGHTS_ARGS)
    assert code == 0
    return str(repo)


@pytest.fixture(scope="module")
def server(repository):
    with LocalTritonServer(repository) as s:  # export-triton's repository loads: start() waits for READY
        yield s


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_raw_outputs_match_the_cpu_reference_at_batch_1_and_2(server, protocol, photos):
    assert_parity(server.grpc_url if protocol == "grpc" else server.http_url, photos)


def numpy2_python(folder: str) -> str:
    """A venv of the server's own interpreter whose packages are this process's (NumPy 2, ONNX Runtime, torch):
    the Python backend embedding NumPy 2, as on a GPU machine whose system Python has it."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        pytest.skip("this environment's NumPy is %s, not 2" % numpy.__version__)
    return server_python(folder, [os.path.dirname(os.path.dirname(numpy.__file__))])


def test_raw_outputs_match_with_numpy_2_in_the_servers_python(repository, photos, tmp_path):
    """The Python backend's own NumPy views are wrong under NumPy 2 (empty outputs, wrong inputs): model.py hands
    tensors over through DLPack where torch is importable, and the outputs still match."""
    with LocalTritonServer(repository, python_venv=numpy2_python(str(tmp_path / "numpy2"))) as own:
        assert_parity(own.grpc_url, photos)


def assert_parity(url, photos):
    adapter, core = nanodet_core()
    engine = engine_for(url)
    engine.load(core, adapter.example_input(), "nanodet")
    try:
        frames = [adapter.preprocess(photos[n], torch.device("cpu"), torch.float32) for n in ("astronaut", "coffee")]
        batch = torch.cat(frames)
        with torch.inference_mode():
            reference = core(batch)
        single = engine.infer(frames[0])
        pair = engine.result(engine.infer_async(batch))  # the engine takes N-frame batches (the export's max is 4)
        for ref, one, two in zip(reference, single, pair):
            assert one.shape == ref[:1].shape and two.shape == ref.shape
            assert torch.allclose(one, ref[:1], atol=1e-4, rtol=0)
            assert torch.allclose(two, ref, atol=1e-4, rtol=0)
        assert engine.health()["engine_dropped_frames"] == 0
    finally:
        engine.close()


@needs_video
def test_detections_identical_to_the_local_cpu_backend(server, tmp_path, capsys):
    code, err = run_app(tmp_path / "cpu", ["--backend", "cpu"], capsys)
    assert code == 0, err
    code, err = run_app(tmp_path / "triton", ["--backend", "triton", "--triton-url", server.grpc_url], capsys)
    assert code == 0, err
    expected = (tmp_path / "cpu" / "predictions.jsonl").read_bytes()
    assert len(expected.splitlines()) == 4
    assert (tmp_path / "triton" / "predictions.jsonl").read_bytes() == expected
    summary = json.loads((tmp_path / "triton" / "summary.json").read_text())
    assert summary["backend"] == "triton" and summary["engine_dropped_frames"] == 0 and summary["engine_reconnects"] == 0
    assert summary["frames"]["processed"] == 4


def server_counters(server):
    import tritonclient.grpc as grpcclient

    from jetcam_app.triton.statistics import counters

    client = grpcclient.InferenceServerClient(server.grpc_url.split("://", 1)[1])
    try:
        return counters(client.get_inference_statistics("nanodet", as_json=True), "nanodet")
    finally:
        client.close()


@needs_video
def test_several_sources_go_to_the_server_as_batches(server, tmp_path, capsys):
    two = ["--source", VIDEO, "--max-batch", "2"]  # with run_app's --source: the video twice, lossless
    code, err = run_app(tmp_path / "cpu", two + ["--backend", "cpu"], capsys)
    assert code == 0, err
    before = server_counters(server)
    code, err = run_app(tmp_path / "triton", two + ["--backend", "triton", "--triton-url", server.grpc_url], capsys)
    assert code == 0, err
    after = server_counters(server)
    expected = rows_by_source(tmp_path / "cpu" / "predictions.jsonl")
    assert len(expected) == 8 and rows_by_source(tmp_path / "triton" / "predictions.jsonl") == expected
    frames = after["inference_count"] - before["inference_count"]
    requests = after["success_count"] - before["success_count"]
    # the warm-up runs each batch size once (1 and 2 frames: 2 requests, 3 frames); then 8 frames in fewer than 8
    assert frames == 3 + 8 and requests - 2 < 8, (frames, requests)  # requests: some carried both sources' frames
    summary = json.loads((tmp_path / "triton" / "summary.json").read_text())
    assert [s["frames"]["processed"] for s in summary["sources"].values()] == [4, 4]


def test_server_down_at_start_is_one_line_and_exit_2(tmp_path, capsys):
    url = "grpc://127.0.0.1:%d" % free_port()
    code = main(["--source", "test://320x240@30?frames=2", "--model", "mobilenet_v2", "--random-weights", "--headless",
                 "--backend", "triton", "--triton-url", url, "--triton-timeout", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and url in err[0] and "fix:" in err[0] and "--triton-url" in err[0]


def test_missing_model_and_mismatched_input_name_both_sides(server):
    adapter, core = nanodet_core()
    engine = engine_for(server.grpc_url, triton_model="yolo")
    with pytest.raises(EngineConnectionError, match=r"no model 'yolo'.*it serves: nanodet"):
        engine.load(core, adapter.example_input(), "nanodet")
    engine = engine_for(server.http_url)
    with pytest.raises(EngineConnectionError) as e:
        engine.load(core, torch.zeros(1, 3, 320, 320), "nanodet")
    assert "[-1, 3, 416, 416]" in str(e.value) and "[1, 3, 320, 320]" in str(e.value)


def test_server_killed_mid_run_drops_frames_and_reconnects(repository, tmp_path):
    from jetcam_app.pipeline import Pipeline

    with LocalTritonServer(repository) as own:  # a server of its own: this test kills it
        config = load_config(None, {
            "source.uri": "test://320x240@10?frames=3000&live=1", "model.name": "nanodet",
            "model.random_weights": bool(WEIGHTS_ARGS), "engine.backend": "triton", "engine.triton_url": own.grpc_url,
            "engine.triton_timeout_s": 2.0, "pipeline.max_frames": 12, "output.headless": True,
            "output.out_dir": str(tmp_path), "overlay.hud": False})
        summary = run_through_an_outage(Pipeline(config), own, str(tmp_path / "timing.csv"), rows_first=4)
    assert summary["frames"]["processed"] == 12
    assert summary["engine_reconnects"] >= 1
    assert summary["engine_dropped_frames"] >= 1
    assert summary["frames"]["dropped"] >= summary["engine_dropped_frames"]
    indices = [json.loads(line)["frame"] for line in open(str(tmp_path / "predictions.jsonl"))]
    assert indices == sorted(indices) and len(indices) == 12


def test_server_killed_mid_run_with_several_sources(repository, tmp_path):
    """Two live sources batched to the server: while it is away their frames are dropped and counted per source,
    the engine reconnects and both sources go on to the end."""
    from jetcam_app.pipeline import Pipeline

    with LocalTritonServer(repository) as own:
        config = load_config(None, {
            "sources": ["test://320x240@10?frames=3000&live=1", "test://256x144@10?frames=3000&live=1"],
            "model.name": "nanodet", "model.random_weights": bool(WEIGHTS_ARGS), "engine.backend": "triton",
            "engine.triton_url": own.grpc_url, "engine.triton_timeout_s": 2.0, "pipeline.max_frames": 12,
            "output.headless": True, "output.out_dir": str(tmp_path), "overlay.hud": False})
        summary = run_through_an_outage(Pipeline(config), own, str(tmp_path / "timing.csv"), rows_first=6)
    sections = list(summary["sources"].values())
    assert summary["engine_reconnects"] >= 1 and summary["engine_dropped_frames"] >= 1
    assert sum(s["engine_dropped_frames"] for s in sections) == summary["engine_dropped_frames"]
    for section in sections:  # --max-frames counts processed frames, as with one source
        assert section["frames"]["processed"] == 12, section["frames"]
        assert section["frames"]["dropped"] >= section["engine_dropped_frames"]


@needs_video
def test_several_client_processes_at_once(server, tmp_path):
    outs = [tmp_path / ("client%d" % i) for i in range(2)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--source", VIDEO, "--model", "nanodet",
                               "--max-frames", "3", "--headless", "--no-hud", "--backend", "triton", "--triton-url",
                               url, "--out", str(out)] + WEIGHTS_ARGS, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
             for out, url in zip(outs, (server.grpc_url, server.http_url))]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    first, second = [(out / "predictions.jsonl").read_bytes() for out in outs]
    assert first == second and len(first.splitlines()) == 3


@needs_video
def test_bench_triton_row_diff_and_round_trip_split(server, tmp_path):
    from jetcam_app.bench.command import bench_main

    code = bench_main(["--model", "nanodet", "--backends", "cpu,triton", "--source", VIDEO, "--frames", "2",
                       "--warmup", "1", "--triton-url", server.grpc_url, "--out", str(tmp_path)] + WEIGHTS_ARGS)
    assert code == 0
    rows = {r["backend"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    row = rows["triton"]
    assert row["status"] == "ok", row.get("error")
    assert row["diff"] and row["tolerance"]["ok"]
    split = row["round_trip_split"]
    assert split["requests"] == 2
    assert split["round_trip_ms"] >= split["server_ms"] >= split["compute_ms"] > 0
    assert "Round trip to the server" in (tmp_path / "report.md").read_text()
