"""Several sources in the config: the `sources:` list, repeated --source flags, names and errors."""
import pytest

from jetcam_app.cli import build_parser, overrides_from
from jetcam_app.config import load_config, source_name
from jetcam_app.errors import ConfigError


def test_sources_list_falls_back_to_the_source_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("source:\n  pace: true\n  fps: 15\n  name: ignored\n"
                    "sources:\n  - {uri: 'test://320x240@30', name: left, fps: 30}\n  - uri: clip.mp4\n"
                    "    reconnect_attempts: 7\n  - test://\n")
    config = load_config(str(path))
    left, clip, test = config.sources
    assert (left.name, left.uri, left.fps, left.pace) == ("left", "test://320x240@30", 30.0, True)
    assert (clip.name, clip.fps, clip.reconnect_attempts, clip.pace) == ("clip", 15.0, 7, True)
    assert test.name == "test" and test.uri == "test://"


def test_repeated_source_flags_make_a_list_and_one_flag_stays_single(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [a.mp4, b.mp4]\n")
    args = build_parser().parse_args(["--source", "test://", "--source", "test://", "--source", "csi://1", "--pace"])
    config = load_config(str(path), overrides_from(args))
    assert [s.name for s in config.sources] == ["test0", "test1", "csi1"]
    assert all(s.pace for s in config.sources)
    single = load_config(str(path), overrides_from(build_parser().parse_args(["--source", "x.mp4"])))
    assert single.sources == () and single.source.uri == "x.mp4"
    assert [s.uri for s in load_config(str(path)).sources] == ["a.mp4", "b.mp4"]


def test_a_list_of_one_is_the_source_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  - {uri: 'test://', fps: 12}\n")
    config = load_config(str(path))
    assert config.sources == () and (config.source.uri, config.source.fps) == ("test://", 12.0)


@pytest.mark.parametrize("uri, name", [
    ("csi://1", "csi1"), ("csi", "csi0"), ("usb:2", "usb2"), ("/dev/video3", "video3"), ("v4l2:///dev/video1", "video1"),
    ("rtsp://user:pw@cam.local:554/stream", "cam.local"), ("/data/clips/front door.mp4", "front_door"),
    ("file://x/y.avi", "y"), ("test://640x480@30", "test"), ("sample", "sample"), ("/data/frames/", "frames"),
])
def test_names_from_uris(uri, name):
    assert source_name(uri) == name


@pytest.mark.parametrize("yaml_text, message", [
    ("sources:\n  - {uri: a.mp4, colour: red}\n", "unknown key 'colour' in sources[0]; valid keys: uri, pace"),
    ("sources:\n  - {pace: true}\n", "sources[0] must be a mapping with a 'uri'"),
    ("sources: a.mp4\n", "'sources' must be a list"),
    ("sources:\n  - {uri: a.mp4, fps: fast}\n  - b.mp4\n", "sources[0].fps must be float"),
    ("sources:\n  - {uri: a.mp4, name: x}\n  - {uri: b.mp4, name: x}\n", "two sources are named 'x'"),
    ("sources:\n  - {uri: a.mp4, name: 'a/b'}\n  - b.mp4\n", "sources[0].name 'a/b' must be"),
    ("pipeline:\n  max_batch: -2\n", "pipeline.max_batch must be between 0"),
])
def test_bad_sources_name_the_fix(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert message in str(info.value)
