"""--decode gpu | cpu | auto: video files on NVDEC (PyNvVideoCodec), frames staying on the device.

Everywhere: which decoder a run gets and the error for one it cannot have, and the frames decoded on the GPU as the
stages and sinks see them. On a CUDA machine with PyNvVideoCodec (-m needs_cuda): the GPU's frames against
OpenCV's, indices, a truncated file, a codec NVDEC refuses, and a run of the app on each decoder."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from jetcam_app.config import SourceConfig
from jetcam_app.errors import ConfigError
from jetcam_app.sources.nvdec import NvdecVideoSource, gpu_decode_choice, library_status
from jetcam_app.sources.spec import SourceSpec, create_source
from jetcam_app.sources.video_file import VideoFileSource
from jetcam_app.types import DeviceFrame, Frame, device_pixels

VIDEO = os.path.join(ROOT, "media", "bigbuckbunny.mp4")  # H.264 1280x720, 132 frames (fetched by the set-up)
needs_nvdec = pytest.mark.skipif(library_status()[0] is None, reason="needs PyNvVideoCodec (pip install "
                                 "'.[gpu-decode]') on a CUDA machine: %s" % library_status()[1])


def test_cpu_is_asked_or_the_only_choice():
    assert gpu_decode_choice("cpu", torch.device("cuda", 0)) == (False, "decode on the CPU (--decode cpu)")
    on_gpu, why = gpu_decode_choice("auto", torch.device("cpu"))
    assert not on_gpu and "does not run on CUDA" in why
    with pytest.raises(ConfigError, match="--decode gpu: the backend does not run on CUDA; use --decode auto"):
        gpu_decode_choice("gpu", torch.device("cpu"))
    with pytest.raises(ConfigError):
        gpu_decode_choice("gpu", None)  # a source built without an engine (bench, tests)


@pytest.mark.skipif(library_status()[0] is not None, reason="PyNvVideoCodec is installed here")
def test_without_the_library_auto_says_how_to_get_it_and_gpu_refuses():
    on_gpu, why = gpu_decode_choice("auto", torch.device("cuda", 0))
    assert not on_gpu and "pip install 'jetcam_app[gpu-decode]'" in why
    with pytest.raises(ConfigError, match="PyNvVideoCodec is not installed"):
        gpu_decode_choice("gpu", torch.device("cuda", 0))
    source = create_source(SourceConfig(uri=VIDEO, decode="auto"), device=torch.device("cuda", 0))
    assert type(source) is VideoFileSource and source.decoded_on == "cpu"


def test_a_device_frame_downloads_only_when_a_sink_asks():
    pixels = torch.arange(4 * 6 * 3, dtype=torch.uint8).reshape(4, 6, 3)
    frame = DeviceFrame(None, 7, 0.25, 1.0, device_image=pixels)
    assert frame.hw == (4, 6) and frame._host is None  # its size, without a download
    assert device_pixels(frame) is pixels and device_pixels(Frame(pixels.numpy(), 0, 0.0, 0.0)) is None
    image = frame.image
    assert isinstance(image, np.ndarray) and np.array_equal(image, pixels.numpy()) and frame.image is image
    drawn = dataclasses.replace(frame, image=np.zeros((4, 6, 3), np.uint8))  # a frame drawn on the host
    assert device_pixels(drawn) is None and drawn.index == 7 and drawn.hw == (4, 6) and not drawn.image.any()


def test_the_eager_stages_take_a_device_frame_on_a_cpu_engine(photos):
    """An engine on the CPU reads a DeviceFrame's host copy: the same result as the plain frame's."""
    from jetcam_app.config import EngineConfig, load_config
    from jetcam_app.inference.adapters.base import build_core, create_adapter
    from jetcam_app.inference.engines.base import create_engine
    from jetcam_app.inference.stages import EagerStages, batch_example

    adapter = create_adapter(load_config(overrides={"model.name": "nanodet", "model.score_threshold": 0.3}).model)
    engine = create_engine(EngineConfig(backend="cpu"))
    engine.load(build_core(adapter), batch_example(adapter, 1), adapter.name)
    stages = EagerStages(adapter, engine)
    image = photos["astronaut"]
    plain = stages.finish(stages.submit([Frame(image, 0, 0.0, 0.0)]))[0].result
    on_device = stages.finish(stages.submit([DeviceFrame(None, 0, 0.0, 0.0,
                                                         device_image=torch.from_numpy(image.copy()))]))[0].result
    assert len(plain) and np.array_equal(plain.boxes, on_device.boxes) and np.array_equal(plain.labels,
                                                                                           on_device.labels)


def test_decode_gpu_without_cuda_is_one_line_and_exit_2(tmp_path):
    if torch.cuda.is_available() and library_status()[0] is not None:
        pytest.skip("this machine can decode on the GPU")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--headless", "--backend", "cpu",
                           "--decode", "gpu", "--max-frames", "2", "--out", str(tmp_path / "out")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "use --decode auto or cpu" in errors[0], proc.stdout[-2000:]


def test_a_bad_decode_key_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("source:\n  decode: nvdec\n")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--config", str(config), "--check"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert proc.returncode == 2 and "source.decode must be auto, gpu or cpu, got 'nvdec'" in proc.stdout, proc.stdout


# --- on the GPU machine ---------------------------------------------------------------------------------------


def _open(path, decode):
    config = SourceConfig(uri=path, decode=decode)
    source = (NvdecVideoSource(SourceSpec("file", path), config, torch.device("cuda", 0)) if decode == "gpu"
              else VideoFileSource(SourceSpec("file", path), config))
    source.open()
    return source


def _read_all(source, limit=100000):
    frames = []
    while len(frames) < limit:
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    source.close()
    return frames


@pytest.mark.needs_cuda
@needs_nvdec
def test_gpu_frames_equal_the_cpu_frames_within_rounding():
    gpu, cpu = _open(VIDEO, "gpu"), _open(VIDEO, "cpu")
    assert gpu.decoded_on == "gpu" and gpu.frame_size == cpu.frame_size and gpu.frame_count == cpu.frame_count
    assert gpu.nominal_fps == pytest.approx(cpu.nominal_fps)
    got, want = _read_all(gpu), _read_all(cpu)
    assert [f.index for f in got] == [f.index for f in want] == list(range(cpu.frame_count))
    assert all(isinstance(f, DeviceFrame) and f.device_image.is_cuda and f.device_image.dtype == torch.uint8
               for f in got)
    assert [f.timestamp_s for f in got] == [f.timestamp_s for f in want]
    means = []
    for g, w in zip(got, want):
        diff = np.abs(g.image.astype(np.int16) - w.image.astype(np.int16))
        means.append(diff.mean())
    # NVDEC's YUV -> RGB and FFmpeg's swscale round differently; measured on an H100: see docs/performance.md
    assert max(means) < 3.0, max(means)
    assert gpu.stop_reason == "end of stream" and gpu.skipped_frames == 0


@pytest.mark.needs_cuda
@needs_nvdec
def test_a_damaged_file_reads_on_and_counts_what_it_lost(tmp_path):
    """Random bytes in the middle of the file: frames up to the damage, indices continuous, the rest counted as lost
    (on an H100 NVDEC's demuxer stopped at the damage, 54 of 132 frames, where OpenCV read on to 129)."""
    with open(VIDEO, "rb") as f:
        data = bytearray(f.read())
    middle = len(data) // 2
    data[middle:middle + 20000] = np.random.RandomState(0).randint(0, 256, 20000).astype(np.uint8).tobytes()
    path = str(tmp_path / "damaged.mp4")
    with open(path, "wb") as f:
        f.write(bytes(data))
    gpu = _open(path, "gpu")
    got = _read_all(gpu)
    assert gpu.decoded_on == "gpu" and got and [f.index for f in got] == list(range(len(got)))
    assert gpu.skipped_frames == gpu.frame_count - len(got) > 0 and "frames lost" in gpu.stop_reason


@pytest.mark.needs_cuda
@needs_nvdec
def test_a_file_cut_before_its_index_is_refused_like_on_the_cpu(tmp_path):
    """An MP4 cut short loses its index (the moov atom at its end): neither decoder opens it; one line, the same."""
    from jetcam_app.errors import SourceError

    with open(VIDEO, "rb") as f:
        data = f.read()
    path = str(tmp_path / "cut.mp4")
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * 0.6)])
    with pytest.raises(SourceError, match="not a video OpenCV can decode"):
        _open(path, "gpu")


@pytest.mark.needs_cuda
@needs_nvdec
def test_a_codec_nvdec_refuses_falls_back_to_the_cpu_with_a_note(tmp_path):
    import cv2

    path = str(tmp_path / "ffv1.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 25, (320, 240))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write FFV1")
    for i in range(10):
        writer.write(np.full((240, 320, 3), i * 20, np.uint8))
    writer.release()
    source = _open(path, "gpu")
    assert source.decoded_on == "cpu" and "NVDEC does not take" in source.decode_note
    frames = _read_all(source)
    assert [f.index for f in frames] == list(range(10)) and not any(isinstance(f, DeviceFrame) for f in frames)


@pytest.mark.needs_cuda
@needs_nvdec
@pytest.mark.parametrize("cuda_graph", ["--cuda-graph", "--no-cuda-graph"])
def test_the_app_on_gpu_frames_finds_what_it_finds_on_cpu_frames(tmp_path, cuda_graph):
    results = {}
    for decode in ("gpu", "cpu"):
        out = str(tmp_path / decode)
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--headless", "--source", VIDEO,
                               "--backend", "cuda", "--precision", "fp32", cuda_graph, "--decode", decode,
                               "--record", os.path.join(out, "annotated.mp4"), "--out", out],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:]
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(out, "predictions.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        results[decode] = (summary, rows)
    (gpu, gpu_rows), (cpu, cpu_rows) = results["gpu"], results["cpu"]
    assert gpu["decode"] == {"on": "gpu"} and cpu["decode"] == {"on": "cpu"}
    assert gpu["frames"]["processed"] == cpu["frames"]["processed"] == 132
    assert [r["frame"] for r in gpu_rows] == [r["frame"] for r in cpu_rows] == list(range(132))
    # the decoders' rounding moves scores a little: the frames' labels agree on nearly every frame
    same = sum(sorted(g["labels"]) == sorted(c["labels"]) for g, c in zip(gpu_rows, cpu_rows))
    assert same >= 0.9 * len(cpu_rows), same
    assert os.path.getsize(os.path.join(str(tmp_path / "gpu"), "annotated.mp4")) > 10000  # sinks got pictures


class _HostTensorFrames(VideoFileSource):
    """OpenCV's frames handed on as DeviceFrames over CPU tensors: what the NVDEC source gives the pipeline, so the
    stages, the tracker and the sinks are run on DeviceFrames on a machine without a GPU."""

    decoded_on = "gpu"

    def _frame(self, image, index, timestamp_s):
        import time

        return DeviceFrame(None, index, timestamp_s, time.perf_counter(), device_image=torch.from_numpy(image.copy()))


def test_a_run_on_device_frames_logs_and_records_what_a_run_on_host_frames_does(tmp_path, index_video):
    from jetcam_app.config import load_config
    from jetcam_app.pipeline import Pipeline

    import cv2

    outs = {}
    for kind in ("host", "device"):
        out = tmp_path / kind
        config = load_config(None, {"model.name": "nanodet", "output.out_dir": str(out), "output.headless": True,
                                    "output.record": str(out / "rec.mp4"), "tracker.enabled": True,
                                    "source.uri": index_video})
        cls = _HostTensorFrames if kind == "device" else VideoFileSource
        summary = Pipeline(config, source=cls(SourceSpec("file", index_video), config.source)).run()
        with open(str(out / "predictions.jsonl")) as f:
            outs[kind] = (summary, f.read())
        cap = cv2.VideoCapture(str(out / "rec.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30  # the recording downloaded every frame it drew
        cap.release()
    (host, host_rows), (device, device_rows) = outs["host"], outs["device"]
    assert device["decode"] == {"on": "gpu"} and host["decode"] == {"on": "cpu"}
    assert device["frames"]["processed"] == host["frames"]["processed"] == 30
    assert device_rows == host_rows and '"track_ids"' in device_rows  # the same frames, the same detections
