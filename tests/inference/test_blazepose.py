"""BlazePose full: the replay against a reference run of the same graph in @tensorflow/tfjs, COCO's 17 of its
landmarks on real photos, no person on a photo without one, ONNX Runtime against the CPU."""

import numpy as np
import pytest
import torch

from jetcam_app.config import load_config
from jetcam_app.dense_results import COCO_KEYPOINTS
from jetcam_app.inference.adapters.blazepose import TO_COCO, BlazePoseAdapter
from jetcam_app.inference.adapters.human_assets import ensure_human_models
from human_models import (REFERENCE, assert_onnxruntime_like_the_cpu, infer_on_cpu, reference_batch,
                          skip_unless_fetchable)
from photo_regions import FACES, measured

# landmarks are input pixels up to ~340 in magnitude (z): measured 2.2e-4 at most, the flag 4.1e-6
LANDMARK_ATOL, FLAG_ATOL = 2e-3, 1e-4


@pytest.fixture(scope="module")
def blazepose():
    skip_unless_fetchable(("blazepose",), "BlazePose")
    ensure_human_models(("blazepose",))
    adapter = BlazePoseAdapter(load_config(overrides={"model.name": "blazepose", "model.score_threshold": 0.3}).model)
    return adapter, adapter.build_network()


def test_core_matches_tfjs(blazepose):
    _, core = blazepose
    reference = np.load(REFERENCE)
    names = ("astronaut", "camera")
    batch = reference_batch(reference, 256, names)
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
    poses = infer_on_cpu(blazepose, photos[photo])
    x1, y1, x2, y2 = FACES[photo]
    for joint in ("nose", "left_eye", "right_eye"):
        x, y, score = poses.keypoints[0, COCO_KEYPOINTS.index(joint)]
        assert score >= 0.3 and x1 <= x <= x2 and y1 <= y <= y2, (joint, x, y, score)


def test_no_person_scores_every_joint_low(blazepose, photos):
    poses = infer_on_cpu(blazepose, photos["coffee"])
    assert poses.keypoints[0, :, 2].max() < 0.1 and not poses.boxes.any()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_runs_the_core_like_the_cpu(blazepose, photos, tmp_path):
    adapter, network = blazepose
    batch = torch.cat([adapter.preprocess(photos[n], torch.device("cpu"), torch.float32) for n in FACES])
    assert_onnxruntime_like_the_cpu(network, batch, "blazepose", tmp_path, [(2, 195), (2, 1)], [1e-2, 1e-4])
