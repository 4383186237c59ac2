"""The served wire formats (export-triton --input uint8 / --output detections) and --triton-shm, against a real Triton
server on the CPU (PyTriton's tritonserver, Python backend, as in test_triton.py): the same detections as the local
CPU backend, a fraction of the bytes, shared memory registered and released (also after a kill -9), a server that
cannot map it falls back with a note, and dynamic batching across clients seen in the server's statistics."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from jetcam_app.cli import main
from jetcam_app.config import ROOT, ModelConfig

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")
pytest.importorskip("onnxruntime")

from jetcam_app.triton.local_server import LocalTritonServer, find_server  # noqa: E402
from jetcam_app.triton.shm import PREFIX, host_tag  # noqa: E402
from triton_server import (SERVER_MISSING, VIDEO, WEIGHTS_ARGS, engine_for, nanodet_core, needs_server,  # noqa: E402
                           needs_video, rows_by_source, run_app, run_through_an_outage, server_python)

FRAME_BYTES = 416 * 416 * 3
ANSWER_BYTES = 101 * 6 * 4  # max_detections + 1 rows of 6 float32


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """nanodet: uint8 in, detections out (export-triton's default); nanodet_raw8: uint8 in, the core's outputs out;
    nanodet_float_det: the preprocessed tensor in, detections out."""
    repo = str(tmp_path_factory.mktemp("served_repo"))
    cache = str(tmp_path_factory.mktemp("cache"))
    common = ["export-triton", "--model", "nanodet", "--variant", "python", "--max-batch-size", "8", "--out", repo,
              "--cache-dir", cache] + WEIGHTS_ARGS
    assert main(common) == 0
    assert main(common + ["--output", "raw", "--name", "nanodet_raw8"]) == 0
    assert main(common + ["--input", "float", "--name", "nanodet_float_det"]) == 0
    return repo


@pytest.fixture(scope="module")
def server(repository):
    if SERVER_MISSING:
        pytest.skip(SERVER_MISSING)
    with LocalTritonServer(repository) as s:
        yield s


@pytest.fixture(scope="module")
def cpu_predictions(tmp_path_factory):
    if not os.path.isfile(VIDEO):
        pytest.skip("needs the sample video")
    out = tmp_path_factory.mktemp("cpu")
    assert run_app(out, ["--backend", "cpu"])[0] == 0
    return (out / "predictions.jsonl").read_bytes()


def wire_of(out):
    return json.loads((out / "summary.json").read_text())["engine_wire"]


def test_export_writes_the_wire_format_into_config_pbtxt(repository):
    text = open(os.path.join(repository, "nanodet", "config.pbtxt")).read()
    assert 'name: "image"' in text and "TYPE_UINT8" in text and "dims: [ 416, 416, 3 ]" in text
    assert 'name: "detections"' in text and "dims: [ 101, 6 ]" in text
    assert 'key: "jetcam_output"\n  value: { string_value: "detections" }' in text
    assert 'key: "jetcam_score_threshold"\n  value: { string_value: "0.35" }' in text
    raw = open(os.path.join(repository, "nanodet_raw8", "config.pbtxt")).read()
    assert "TYPE_UINT8" in raw and 'name: "cls_8"' in raw and 'string_value: "raw"' in raw


def test_a_classifier_cannot_serve_detections_and_auto_keeps_float_raw(tmp_path, capsys):
    common = ["export-triton", "--model", "mobilenet_v2", "--random-weights", "--out", str(tmp_path / "repo"),
              "--cache-dir", str(tmp_path / "cache")]
    assert main(common + ["--output", "detections"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fix: --output raw" in err[0]
    assert main(common + ["--input", "uint8"]) == 2  # its centre crop is not a plain resize
    assert "fix: --input float" in capsys.readouterr().err
    assert main(common) == 0
    text = (tmp_path / "repo" / "mobilenet_v2" / "config.pbtxt").read_text()
    assert "TYPE_FP32" in text and 'string_value: "float"' in text and 'string_value: "raw"' in text


@pytest.mark.parametrize("name", ["nanodet", "ssd300_vgg16"])
def test_served_graph_on_onnx_runtime_gives_the_adapters_detections(name, tmp_path):
    """The exported graph itself (no server): uint8 frames in, packed rows out, equal to postprocess() of the CPU
    path on real frames, as a batch of several frames (NanoDet letterboxed, SSD300 stretched, random weights: a
    hundred boxes a frame)."""
    import cv2
    import onnxruntime

    from jetcam_app.inference.adapters.base import build_core, create_adapter
    from jetcam_app.triton.served import choose_wire, export_served_onnx, served_module
    from jetcam_app.triton.wire import FrameCodec

    if not os.path.isfile(VIDEO):
        pytest.skip("needs the sample video")
    random = name != "nanodet" or bool(WEIGHTS_ARGS)
    adapter = create_adapter(ModelConfig(name=name, random_weights=random, score_threshold=0.2))
    core = build_core(adapter)
    wire = choose_wire(adapter, core)
    assert (wire.input, wire.output, wire.score_threshold) == ("uint8", "detections", 0.2)
    module, example = served_module(adapter, core, wire, "fp32")
    path = str(tmp_path / "served.onnx")
    export_served_onnx(module, example, path, ["detections"])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    capture = cv2.VideoCapture(VIDEO)
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    codec = FrameCodec(adapter, wire, torch.device("cpu"))
    batch = torch.cat([codec.encode(f) for f in frames]).numpy()
    rows = session.run(None, {"image": batch})[0]
    assert rows.shape == (3, 101, 6)
    if name == "ssd300_vgg16":
        assert (rows[:, 0, 0] == 100).all()  # random weights: max_detections boxes a frame
    boxes = 0
    for frame, frame_rows in zip(frames, rows):
        x = adapter.preprocess(frame, torch.device("cpu"), torch.float32)
        assert torch.equal(x, adapter.prepare_tensor(codec.encode(frame), torch.float32))  # the same tensor
        with torch.inference_mode():
            expected = adapter.postprocess(core(x), frame.shape[:2])
        got = codec.detections(frame_rows, frame.shape[:2])
        assert np.array_equal(got.labels, expected.labels)
        assert np.allclose(got.boxes, expected.boxes, atol=1e-3) and np.allclose(got.scores, expected.scores, atol=1e-5)
        boxes += len(expected)
    assert codec.inexact_frames == 0
    if not random:
        assert boxes > 0  # real weights find the bikes


@needs_server
@needs_video
@pytest.mark.parametrize("model, sent, received", [("nanodet", FRAME_BYTES, ANSWER_BYTES),
                                                   ("nanodet_raw8", FRAME_BYTES, 3549 * (80 + 44) * 4),
                                                   ("nanodet_float_det", FRAME_BYTES * 4, ANSWER_BYTES)])
def test_detections_identical_to_the_local_cpu_backend(server, cpu_predictions, tmp_path, capsys, model, sent,
                                                       received):
    code, err = run_app(tmp_path, ["--backend", "triton", "--triton-url", server.grpc_url, "--triton-model", model],
                        capsys)
    assert code == 0, err
    assert (tmp_path / "predictions.jsonl").read_bytes() == cpu_predictions
    wire = wire_of(tmp_path)
    assert wire["shared_memory"] is None
    assert wire["sent_bytes_per_frame"] == sent and wire["received_bytes_per_frame"] == received


def server_regions(server, kind="system"):
    import tritonclient.grpc as grpcclient

    from jetcam_app.triton.shm import region_names

    client = grpcclient.InferenceServerClient(server.grpc_url.split("://", 1)[1])
    try:
        return region_names(getattr(client, "get_%s_shared_memory_status" % kind)(as_json=True))
    finally:
        client.close()


def segments(pid=None):
    stem = "%s%s_" % (PREFIX, host_tag()) + ("%d_" % pid if pid else "")
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(stem))


@needs_server
@needs_video
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_system_shared_memory_same_detections_no_tensor_bytes_released_after(server, cpu_predictions, tmp_path,
                                                                            capsys, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    code, err = run_app(tmp_path, ["--backend", "triton", "--triton-url", url, "--triton-shm", "system"], capsys)
    assert code == 0, err
    assert (tmp_path / "predictions.jsonl").read_bytes() == cpu_predictions
    wire = wire_of(tmp_path)
    assert wire["shared_memory"] == "system" and wire["shm_requests"] == wire["requests"] == 4
    assert wire["shared_memory_slots"] >= 1
    assert wire["sent_bytes_per_frame"] == 0 and wire["received_bytes_per_frame"] == 0
    mine = "%s%s_%d_" % (PREFIX, host_tag(), os.getpid())
    assert not [n for n in server_regions(server) if n.startswith(mine)]  # unregistered
    assert not segments(os.getpid())  # and unlinked


@needs_server
def test_killed_client_leaves_nothing_after_the_next_start(server, tmp_path):
    """kill -9 of a client that holds registered regions; the next client on this host removes its registrations on
    the server and its segments in /dev/shm (its pid is gone)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--source",
                             "test://320x240@10?frames=100000&live=1", "--model", "nanodet", "--headless", "--no-hud",
                             "--backend", "triton", "--triton-url", server.grpc_url, "--triton-shm", "system",
                             "--out", str(tmp_path / "killed")] + WEIGHTS_ARGS, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    stem = "%s%s_%d_" % (PREFIX, host_tag(), proc.pid)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not [n for n in server_regions(server) if n.startswith(stem)]:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.5)
        assert [n for n in server_regions(server) if n.startswith(stem)], "the client never registered its regions"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: multiprocessing's resource tracker too
        proc.wait(30)
        proc.stderr.close()
    assert [n for n in server_regions(server) if n.startswith(stem)]  # left behind on the server
    left = segments(proc.pid)
    engine = new_engine(server.grpc_url, triton_shm="system")
    try:
        assert engine.shm is not None and engine.shm_note is None
        assert not [n for n in server_regions(server) if n.startswith(stem)]
        assert not segments(proc.pid), left
    finally:
        engine.close()
    assert not segments(os.getpid())


def new_engine(url, **kw):
    adapter, core = nanodet_core()
    engine = engine_for(url, **kw)
    engine.load(core, adapter.example_input(), "nanodet")
    return engine


class PrivateShmServer(LocalTritonServer):
    """A server on this host that cannot see its /dev/shm: a mount namespace of its own with a fresh tmpfs there, as
    a container started without the host's IPC namespace."""

    def command(self):
        inner = " ".join("'%s'" % part for part in super().command())
        return ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm && exec %s" % inner]


def can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"], timeout=10,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@needs_server
@needs_video
@pytest.mark.skipif(not can_unshare(), reason="needs unshare -m and a tmpfs mount (root) to hide /dev/shm")
def test_server_without_shared_memory_access_falls_back_with_a_note(repository, cpu_predictions, tmp_path, capsys,
                                                                    caplog):
    with PrivateShmServer(repository) as private:
        code, err = run_app(tmp_path, ["--backend", "triton", "--triton-url", private.grpc_url,
                                       "--triton-shm", "system"], capsys)
    assert code == 0, err
    assert "--triton-shm system not used" in caplog.text and "could not map" in caplog.text
    assert (tmp_path / "predictions.jsonl").read_bytes() == cpu_predictions
    wire = wire_of(tmp_path)
    assert wire["shared_memory"] is None and "could not map" in wire["shared_memory_note"]
    assert wire["sent_bytes_per_frame"] == FRAME_BYTES
    assert not segments(os.getpid())  # the region made for the attempt is gone


@needs_server
def test_served_nms_stricter_than_the_app_is_one_line_and_exit_2(server, tmp_path, capsys):
    code = main(["--source", "test://320x240@30?frames=2", "--model", "nanodet", "--headless", "--score-threshold",
                 "0.2", "--backend", "triton", "--triton-url", server.grpc_url, "--out", str(tmp_path)] + WEIGHTS_ARGS)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "score threshold 0.35" in err[0] and "--score-threshold 0.2" in err[0], err


@needs_server
def test_dynamic_batching_across_clients_in_the_servers_statistics(server):
    """Four clients, each keeping four requests of one frame in flight: the server runs them in batches (its
    execution count is below its inference count)."""
    from jetcam_app.triton.statistics import counters
    import tritonclient.grpc as grpcclient

    engines = [new_engine(server.grpc_url) for _ in range(4)]
    client = grpcclient.InferenceServerClient(server.grpc_url.split("://", 1)[1])
    frame = torch.zeros((1, 416, 416, 3), dtype=torch.uint8)
    try:
        before = counters(client.get_inference_statistics("nanodet", as_json=True), "nanodet")
        errors = []

        def send(engine):
            try:
                for _ in range(3):
                    handles = [engine.infer_async(frame) for _ in range(4)]
                    assert all(engine.result(h) is not None for h in handles)
            except AssertionError as e:  # reported below: a thread's assertion does not fail the test by itself
                errors.append(e)

        threads = [threading.Thread(target=send, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        after = counters(client.get_inference_statistics("nanodet", as_json=True), "nanodet")
    finally:
        client.close()
        for engine in engines:
            engine.close()
    assert not errors
    frames = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert frames == 4 * 3 * 4
    assert executions < frames, (frames, executions)  # some executions carried several clients' frames


def app_python(folder: str) -> str:
    """A venv of the server's interpreter with .venv-triton's packages first (its NumPy 1: PyTriton 0.7.0's backend
    reads BYTES tensors wrongly under NumPy 2), then this process's (OpenCV, which model.py decodes JPEG frames with
    and .venv-triton lacks)."""
    return server_python(folder, [find_server()["site_packages"], os.path.dirname(os.path.dirname(np.__file__))])


@needs_server
@needs_video
def test_jpeg_frames_decoded_by_model_py(tmp_path, cpu_predictions, capsys):
    """--input jpeg: the letterboxed frame as a JPEG (a tenth of uint8's bytes); lossy, so the detections are the CPU
    backend's within a few pixels, not to the bit."""
    repo = str(tmp_path / "repo")
    assert main(["export-triton", "--model", "nanodet", "--variant", "python", "--input", "jpeg", "--out", repo,
                 "--cache-dir", str(tmp_path / "cache")] + WEIGHTS_ARGS) == 0
    assert main(["export-triton", "--model", "nanodet", "--variant", "onnx", "--input", "jpeg", "--out", repo]) == 2
    assert "needs --variant python" in capsys.readouterr().err
    with LocalTritonServer(repo, python_venv=app_python(str(tmp_path / "py"))) as s:
        code, err = run_app(tmp_path / "out", ["--backend", "triton", "--triton-url", s.grpc_url,
                                               "--triton-shm", "system"], capsys)
    assert code == 0, err
    wire = wire_of(tmp_path / "out")
    assert wire["input"] == "jpeg" and wire["shared_memory"] is None  # BYTES go over the socket, with a note
    assert 0 < wire["sent_bytes_per_frame"] < FRAME_BYTES / 4 and wire["received_bytes_per_frame"] == ANSWER_BYTES
    got = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in cpu_predictions.decode().splitlines()]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g["labels"] == e["labels"], (g, e)
        assert np.allclose(np.array(g["boxes"]).reshape(-1, 4), np.array(e["boxes"]).reshape(-1, 4), atol=4.0)


@needs_server
def test_the_preprocessed_tensor_to_a_frames_model_names_the_bench_fix(server):
    """run.py bench's engine pass sends the preprocessed tensor; a model that takes frames says what to serve."""
    from jetcam_app.errors import EngineConnectionError

    engine = new_engine(server.grpc_url)
    try:
        with pytest.raises(EngineConnectionError, match=r"takes frames .*--input float --output raw.*--triton-model"):
            engine.infer(torch.zeros((1, 3, 416, 416)))
    finally:
        engine.close()


@needs_server
@needs_video
def test_tracking_with_an_export_for_its_low_boxes(tmp_path, capsys, cpu_predictions):
    """--track keeps boxes down to tracker.track_low_thresh (0.1): an export with that score threshold gives the
    tracks, lines and logs of the CPU backend; without --track the app drops the boxes under its own 0.35."""
    repo = str(tmp_path / "repo")
    assert main(["export-triton", "--model", "nanodet", "--variant", "python", "--score-threshold", "0.1", "--out",
                 repo, "--cache-dir", str(tmp_path / "cache")] + WEIGHTS_ARGS) == 0
    track = ["--track", "--line", "mid:0.5,0,0.5,1"]
    code, err = run_app(tmp_path / "cpu", ["--backend", "cpu"] + track, capsys, frames=8)
    assert code == 0, err
    with LocalTritonServer(repo) as s:
        code, err = run_app(tmp_path / "triton", ["--backend", "triton", "--triton-url", s.grpc_url] + track, capsys,
                            frames=8)
        assert code == 0, err
        code, err = run_app(tmp_path / "untracked", ["--backend", "triton", "--triton-url", s.grpc_url], capsys)
    assert code == 0, err
    assert (tmp_path / "untracked" / "predictions.jsonl").read_bytes() == cpu_predictions
    for name in ("predictions.jsonl", "events.jsonl"):
        if (tmp_path / "cpu" / name).exists():
            assert (tmp_path / "triton" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes(), name
    assert b"track_ids" in (tmp_path / "triton" / "predictions.jsonl").read_bytes()


@needs_server
@needs_video
def test_several_sources_share_batches_of_frames(server, tmp_path, capsys):
    two = ["--source", VIDEO, "--max-batch", "2"]  # with run_app's --source: the video twice, lossless
    code, err = run_app(tmp_path / "cpu", two + ["--backend", "cpu"], capsys)
    assert code == 0, err
    code, err = run_app(tmp_path / "triton", two + ["--backend", "triton", "--triton-url", server.grpc_url,
                                                    "--triton-shm", "system"], capsys)
    assert code == 0, err
    expected = rows_by_source(tmp_path / "cpu" / "predictions.jsonl")
    assert len(expected) == 8 and rows_by_source(tmp_path / "triton" / "predictions.jsonl") == expected
    wire = wire_of(tmp_path / "triton")
    assert wire["frames"] > wire["requests"]  # some requests carried both sources' frames (and the warm-up's 2)


def test_server_killed_mid_run_with_shared_memory_registers_again(repository, tmp_path):
    """The restarted server has forgotten the regions: the engine registers them again on reconnecting, and the
    run goes on through shared memory."""
    from jetcam_app.config import load_config
    from jetcam_app.pipeline import Pipeline

    if SERVER_MISSING:
        pytest.skip(SERVER_MISSING)
    timing = str(tmp_path / "timing.csv")
    with LocalTritonServer(repository) as own:
        config = load_config(None, {
            "source.uri": "test://320x240@10?frames=3000&live=1", "model.name": "nanodet",
            "model.random_weights": bool(WEIGHTS_ARGS), "engine.backend": "triton", "engine.triton_url": own.grpc_url,
            "engine.triton_timeout_s": 2.0, "engine.triton_shm": "system", "pipeline.max_frames": 12,
            "output.headless": True, "output.out_dir": str(tmp_path), "overlay.hud": False})
        summary = run_through_an_outage(Pipeline(config), own, timing, rows_first=4)
        regions_after = server_regions(own)
    assert summary["frames"]["processed"] == 12 and summary["engine_reconnects"] >= 1
    wire = summary["engine_wire"]
    assert wire["shared_memory"] == "system" and wire["sent_bytes"] == 0, wire  # every request through the regions
    assert not [n for n in regions_after if n.startswith("%s%s_%d_" % (PREFIX, host_tag(), os.getpid()))]
    assert not segments(os.getpid())


@pytest.mark.parametrize("name, output", [("nanodet", "detections"), ("nanodet", "raw"),
                                          ("ssd300_vgg16", "detections")])
def test_served_graph_parses_and_builds_with_tensorrt(name, output, tmp_path):
    """The plan variant's ONNX (uint8 in: a Cast first; the NMS's block gathered, not scattered) through TensorRT's
    parser and builder: TensorRT where there is a GPU, else a TensorRT-RTX cross build on the CPU."""
    from jetcam_app.errors import BackendUnavailable
    from jetcam_app.inference.adapters.base import build_core, create_adapter
    from jetcam_app.inference.engines.trt_build import BuildSettings, build_serialized, load_api
    from jetcam_app.triton.served import choose_wire, export_served_onnx, output_names_of, served_module

    try:
        api = load_api(None if torch.cuda.is_available() else "tensorrt_rtx_bindings")
    except BackendUnavailable as e:
        pytest.skip("needs a TensorRT or TensorRT-RTX builder: %s" % e)
    adapter = create_adapter(ModelConfig(name=name, random_weights=True))
    core = build_core(adapter)
    wire = choose_wire(adapter, core, "uint8", output)
    module, example = served_module(adapter, core, wire, "fp32")
    path = str(tmp_path / "served.onnx")
    export_served_onnx(module, example, path, list(output_names_of(adapter, wire)))
    settings = BuildSettings(precision="fp32", max_batch=4, workspace_mb=512,
                             target_cc=None if torch.cuda.is_available() else "8.6")
    assert len(build_serialized(api, path, settings, name)) > 100000
