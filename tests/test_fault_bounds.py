"""Sizes that grow without bound, checked where they enter: the batch and the number of sources are capped, every
`sources[i]` entry gets the range checks `source:` gets, the warm-up grows with log2 of the batch rather than its
square, and a recording of an odd-sized input keeps every row and column of it."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jetcam_app.cli import main
from jetcam_app.config import BOUNDS, MAX_BATCH, MAX_SOURCES, EngineConfig, load_config
from jetcam_app.inference.adapters.base import build_core
from jetcam_app.inference.engines.torch_engine import TorchCpuEngine
from jetcam_app.inference.stages import EagerStages, batch_example, padded_sizes

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "multi"))
from index_model import IndexAdapter  # noqa: E402 - the multi-source tests' tiny real model

BASE = ["--model", "mobilenet_v2", "--random-weights", "--headless"]
# The sources are files that do not exist: the value must be refused before any source opens, and were it let
# through, the run would stop at once on the missing file instead of warming up or running for ever.
MISSING = "missing.mp4"


def one_line_exit_2(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the batch and the number of sources are capped where they enter --------------------------------------------

@pytest.mark.parametrize("value", [100000, MAX_BATCH + 1, -1])
def test_max_batch_beyond_the_cap_is_one_line_naming_the_key_and_the_cap(tmp_path, capsys, value):
    line = one_line_exit_2(BASE + ["--source", str(tmp_path / MISSING), "--out", str(tmp_path / "out"),
                                   "--max-batch", str(value)], capsys)
    assert "pipeline.max_batch must be between 0 (one frame per source) and %d, got %d" % (MAX_BATCH, value) in line
    assert "--max-batch %d or less" % MAX_BATCH in line
    assert not (tmp_path / "out").exists()
    assert load_config(None, {"pipeline.max_batch": MAX_BATCH}).pipeline.max_batch == MAX_BATCH


def test_more_sources_than_the_cap_is_one_line_naming_the_key_and_the_cap(tmp_path, capsys):
    many = [str(tmp_path / ("%d_%s" % (i, MISSING))) for i in range(MAX_SOURCES + 1)]
    args = BASE + ["--out", str(tmp_path / "out")]
    for uri in many:
        args += ["--source", uri]
    line = one_line_exit_2(args, capsys)
    assert "sources has %d entries, more than the %d one process runs" % (MAX_SOURCES + 1, MAX_SOURCES) in line
    config = tmp_path / "c.yaml"
    config.write_text("sources:\n" + "".join("  - %s\n" % many[i % len(many)] for i in range(500)))
    assert "sources has 500 entries" in one_line_exit_2(BASE + ["--config", str(config)], capsys)
    assert len(load_config(None, {"sources": many[:MAX_SOURCES]}).sources) == MAX_SOURCES
    assert not (tmp_path / "out").exists()


# -- every source entry is range-checked by the same rule, named by its index ----------------------------------

SOURCE_KEYS = sorted(dotted.partition(".")[2] for dotted in BOUNDS if dotted.startswith("source."))
OUT_OF_RANGE = {"width": 100000, "height": 0, "fps": 0, "timeout_s": -1, "reconnect_attempts": -5, "flip": 8,
                "decode_threads": 65}


def test_every_bounded_source_key_has_an_out_of_range_case():
    assert sorted(OUT_OF_RANGE) == SOURCE_KEYS


@pytest.mark.parametrize("key", SOURCE_KEYS)
def test_each_sources_entry_key_out_of_range_is_one_line_naming_sources_i_key(tmp_path, capsys, key):
    config = tmp_path / "c.yaml"
    config.write_text("sources:\n  - {uri: '%s', name: a}\n  - {uri: '%s', name: b, %s: %s}\n"
                      % (tmp_path / MISSING, tmp_path / MISSING, key, OUT_OF_RANGE[key]))
    line = one_line_exit_2(BASE + ["--config", str(config), "--out", str(tmp_path / "out")], capsys)
    low, high = BOUNDS["source." + key]
    assert "sources[1].%s must be between %s and %s, got %s" % (key, low, high, OUT_OF_RANGE[key]) in line
    assert not (tmp_path / "out").exists()


def test_the_source_section_keeps_its_name_and_is_inherited_checked(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("source: {fps: 0}\nsources: ['%s', '%s']\n" % (tmp_path / MISSING, tmp_path / MISSING))
    line = one_line_exit_2(BASE + ["--config", str(config)], capsys)
    assert "source.fps must be between 0.001 and 10000.0, got 0" in line and "sources[" not in line


# -- the eager warm-up grows with log2 of the batch, not with its square ----------------------------------------

class CountingEngine(TorchCpuEngine):
    """The real CPU engine, counting the images each call runs."""

    def __init__(self, config):
        super().__init__(config)
        self.batches = []

    def infer(self, batch):
        self.batches.append(int(batch.shape[0]))
        return super().infer(batch)


def warm_up_batches(max_batch):
    adapter = IndexAdapter()
    engine = CountingEngine(EngineConfig(backend="cpu", precision="fp32", threads=1))
    engine.load(build_core(adapter), batch_example(adapter, 1), adapter.name)
    EagerStages(adapter, engine, max_batch).warm_up()
    return engine.batches


@pytest.mark.parametrize("sources", [8, MAX_BATCH, 500])
def test_eager_warm_up_runs_the_padded_sizes_only(sources):
    batches = warm_up_batches(sources)
    every_size = sources * (sources + 1) // 2  # what warming every size from 1 to N ran: 36, 2,080, 125,250
    assert batches == padded_sizes(sources)
    assert sum(batches) < 3 * sources < every_size
    assert {8: 15, MAX_BATCH: 127, 500: 1011}[sources] == sum(batches)


def test_one_frame_at_a_time_warms_up_nothing():
    assert warm_up_batches(1) == []


# -- an odd-sized input is padded to even, never cropped --------------------------------------------------------

W, H = 1279, 719


def odd_frame(i):
    """Dark, with a white last column and a white last row: cropping either one shows as a dark edge."""
    image = np.full((H, W, 3), 40, np.uint8)
    cv2.putText(image, str(i), (100, 300), cv2.FONT_HERSHEY_SIMPLEX, 4, (200, 200, 200), 8)
    image[:, -1] = 255
    image[-1, :] = 255
    return image


def odd_images(folder):
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / ("%03d.png" % i)), odd_frame(i))
    return str(folder)


def odd_video(tmp_path):
    """An MJPEG AVI of 1279x719 (OpenCV's own writers crop odd sizes, so GStreamer writes it)."""
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        pytest.skip("needs gst-launch-1.0 to write an odd-sized video (OpenCV's writers crop odd sizes)")
    images = odd_images(tmp_path / "frames")
    path = str(tmp_path / "odd.avi")
    done = subprocess.run([gst, "-q", "multifilesrc", "location=%s/%%03d.png" % images, "index=0", "stop-index=2",
                           "caps=image/png,framerate=10/1", "!", "pngdec", "!", "videoconvert", "!", "jpegenc",
                           "quality=100", "!", "avimux", "!", "filesink", "location=" + path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if done.returncode != 0:
        pytest.skip("GStreamer could not write the MJPEG AVI: %s" % done.stderr.decode(errors="replace")[-200:])
    return path


def frames(path):
    capture = cv2.VideoCapture(path)
    out = []
    while True:
        ok, image = capture.read()
        if not ok:
            capture.release()
            return out
        out.append(image)


def luma(pixels):
    return pixels.astype(np.float32).mean(axis=-1)


@pytest.mark.parametrize("make_input", [odd_video, lambda p: odd_images(p / "images")], ids=["video", "images"])
def test_odd_sized_input_is_recorded_whole_padded_to_even(tmp_path, capsys, caplog, make_input):
    source = make_input(tmp_path)
    inputs = frames(source) if source.endswith(".avi") else [odd_frame(i) for i in range(3)]
    assert inputs[0].shape == (H, W, 3)
    config = tmp_path / "plain.yaml"
    config.write_text("overlay: {enabled: false, hud: false}\n")  # the annotated frame is the input, unmarked
    rec, raw = str(tmp_path / "rec.mp4"), str(tmp_path / "raw.mp4")
    with caplog.at_level("INFO", logger="jetcam_app.output.sinks.video_file"):
        code = main(BASE + ["--config", str(config), "--source", source, "--out", str(tmp_path / "out"),
                            "--record", rec, "--save-input", raw])
    assert code == 0, capsys.readouterr().err
    for path in (rec, raw):
        written = frames(path)
        assert len(written) == len(inputs)
        for got, want in zip(written, inputs):
            assert got.shape == (H + 1, W + 1, 3)  # padded, not cropped to 1278x718
            # every input column and row is there: the last ones white like the input's (a crop leaves them dark)
            assert np.abs(luma(got[:H, W - 1]) - luma(want[:, W - 1])).mean() < 24
            assert np.abs(luma(got[H - 1, :W]) - luma(want[H - 1])).mean() < 24
            assert luma(got[:H - 8, W - 1]).mean() > 200 and luma(got[:H - 8, W - 9]).mean() < 80
            # the added column and row are copies of the last ones
            assert np.abs(luma(got[:H, W]) - luma(got[:H, W - 1])).mean() < 24
            assert np.abs(luma(got[H, :W]) - luma(got[H - 1, :W])).mean() < 24
        assert "%s: %dx%d padded to %dx%d (the encoder needs even sizes)" % (path, W, H, W + 1, H + 1) in caplog.text
