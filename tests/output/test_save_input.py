"""--save-input: the raw captured frames and their timestamps, replayed frame-exactly on any machine."""
import json
import os

from jetcam_app.config import SourceConfig, load_config
from jetcam_app.sources.timestamps import read_sidecar
from jetcam_app.pipeline import Pipeline
from jetcam_app.sources.spec import create_source
from jetcam_app.sources.synthetic import decode_index


def read_all(uri, **config):
    source = create_source(SourceConfig(uri=uri, **config))
    source.open()
    frames = []
    try:
        while True:
            frame = source.read(1.0)
            if frame is None:
                return frames
            frames.append(frame)
    finally:
        source.close()


def test_raw_recording_replays_the_captured_frames_and_timestamps(tmp_path):
    raw = str(tmp_path / "raw.mp4")
    config = load_config(None, {"source.uri": "test://320x240@30?frames=25", "model.name": "mobilenet_v2",
                                "model.random_weights": True, "output.headless": True,
                                "output.out_dir": str(tmp_path / "out"), "output.save_input": raw})
    summary = Pipeline(config).run()
    assert summary["frames"]["captured"] == 25
    rows = read_sidecar(raw)
    assert [i for i, _ in rows] == list(range(25))
    replayed = read_all(raw)
    assert [f.index for f in replayed] == list(range(25))
    assert [decode_index(f.image) for f in replayed] == list(range(25))
    assert [round(f.timestamp_s, 6) for f in replayed] == [round(t, 6) for _, t in rows]
    with open(os.path.join(str(tmp_path / "out"), "summary.json")) as f:
        assert json.load(f)["frames"]["processed"] == 25


def test_paced_replay_follows_recorded_gaps(tmp_path):
    """A sidecar with a gap (frames 3-5 never reached the recording) is replayed with the same gap in time."""
    from conftest import write_index_video

    video = write_index_video(tmp_path / "raw.mp4", n_frames=6, fps=30.0)
    stamps = [(0, 0.0), (1, 1 / 30), (2, 2 / 30), (6, 6 / 30), (7, 7 / 30), (8, 8 / 30)]
    with open(video + ".timestamps.csv", "w") as f:
        f.write("frame_index,timestamp_s\n" + "".join("%d,%.6f\n" % row for row in stamps))
    frames = read_all(video, pace=True)
    assert [f.index for f in frames] == [0, 1, 2, 6, 7, 8]
    arrival = [f.capture_time - frames[0].capture_time for f in frames]
    assert arrival[3] - arrival[2] >= 4 / 30 - 0.01  # the gap of three frames is kept in time
