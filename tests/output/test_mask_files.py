"""--save-masks: a PNG per frame of a segmentation model, the same mask as predictions.jsonl's run-length code."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from jetcam_app.cli import main
from jetcam_app.dense_results import Mask, rle_decode
from jetcam_app.inference.adapters.human_assets import default_models_dir, present
from jetcam_app.output.mask_files import MaskFiles, mask_stem


@pytest.mark.parametrize("name, stem", [("/data/cam 1/front.mp4", "front"), ("rtsp://host:8554/door", "door"),
                                        ("astronaut.png", "astronaut"), ("usb:0", "usb_0"), ("", "source")])
def test_mask_stem_is_a_safe_file_name(name, stem):
    assert mask_stem(name) == stem


def test_written_png_is_the_mask(tmp_path):
    mask = np.zeros((24, 32), bool)
    mask[4:20, 8:16] = True
    path = MaskFiles(str(tmp_path / "masks")).write("front.mp4", 7, Mask(mask))
    assert os.path.basename(path) == "front_000007.png"
    assert np.array_equal(cv2.imread(path, cv2.IMREAD_UNCHANGED) == 255, mask)


def test_save_masks_run_matches_predictions(photos, tmp_path):
    if not present("selfie", default_models_dir()) and shutil.which("npm") is None:
        pytest.skip("Selfie weights are not in %s and npm is not installed" % default_models_dir())
    cv2.imwrite(str(tmp_path / "astronaut.png"), photos["astronaut"])
    out = tmp_path / "run"
    assert main(["--model", "selfie", "--save-masks", "--source", str(tmp_path / "astronaut.png"), "--headless",
                 "--no-save", "--threads", "1", "--out", str(out)]) == 0
    with open(str(out / "predictions.jsonl")) as f:
        record = json.loads(f.readline())["mask"]
    png = cv2.imread(str(out / "masks" / "astronaut_000000.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape == (512, 512) and record["area"] == int((png == 255).sum()) > 0
    assert np.array_equal(png == 255, rle_decode(record["counts"], record["size"]))
