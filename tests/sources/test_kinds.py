"""The source-kind descriptors, table-driven: each kind's --source forms, plugins, causes, naming and pipeline,
and that spec.py, GStreamerSource, doctor and the registry all read the same table."""

import pytest

from jetcam_app.config import SourceConfig
from jetcam_app.errors import SourceError
from jetcam_app.registry import SOURCES
from jetcam_app.sources.gstreamer import GStreamerSource
from jetcam_app.sources.kinds import (CONVERTERS, GSTREAMER, GSTREAMER_OR_V4L2, KINDS, PYTHON, PipelineRequest,
                                      kind_of, source_kind)
from jetcam_app.sources.spec import SourceSpec, parse_source

# kind, a --source written in it, runner, plugins it cannot run without, doctor's list, a word of its causes
TABLE = [
    ("test", "test://320x240@15", PYTHON, ("videotestsrc",), (), "videotestsrc"),
    ("csi", "csi://1?sensor-mode=2", GSTREAMER, ("nvarguscamerasrc", "nvvidconv"),
     ("nvarguscamerasrc", "nvvidconv") + CONVERTERS, "nvargus-daemon"),
    ("usb", "usb:2", GSTREAMER_OR_V4L2, ("v4l2src",), ("v4l2src", "jpegdec") + CONVERTERS, "fuser -v /dev/video2"),
    ("rtsp", "rtsp://cam.local/live#protocols=tcp", GSTREAMER, ("rtspsrc", "decodebin"),
     ("rtspsrc", "decodebin") + CONVERTERS, "protocols=tcp"),
    ("gst", "gst://videotestsrc ! appsink", GSTREAMER, (), (), "caps that cannot be negotiated"),
]


def test_every_kind_has_a_descriptor_and_a_registered_class():
    assert set(KINDS) == set(SOURCES.choices())
    with pytest.raises(SourceError, match="unknown source kind"):
        source_kind("ftp")


@pytest.mark.parametrize("name, uri, runner, plugins, doctor_plugins, cause", TABLE)
def test_descriptor_table(name, uri, runner, plugins, doctor_plugins, cause):
    kind = source_kind(name)
    assert kind_of(uri) is kind and parse_source(uri).kind == name
    assert kind.runner == runner and kind.plugins == plugins and kind.doctor_plugins() == doctor_plugins
    location = parse_source(uri).location
    assert cause in kind.causes.replace("DEVICE", location)
    for form in kind.forms:  # the forms it advertises are its own
        if "://" in form or form.startswith(("usb", "csi", "/dev")):
            assert kind_of(form.replace("PIPELINE", "videotestsrc ! appsink")) is kind, form


@pytest.mark.parametrize("uri", ["clip.mp4", "photo.jpg", "file://clip.mp4", "/tmp"])
def test_paths_have_no_scheme_kind_but_a_path_descriptor(uri):
    assert kind_of(uri) is None
    assert source_kind(parse_source(uri).kind).location == "path"


@pytest.mark.parametrize("name, request_, expected", [
    ("test", PipelineRequest("", {"pattern": "ball", "frames": "5"}, 320, 240, 15.0),
     "videotestsrc is-live=true pattern=ball num-buffers=5 ! video/x-raw,width=320,height=240,framerate=15/1 ! "
     "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"),
    ("csi", PipelineRequest("1", {"sensor-mode": "2"}, 1280, 720, 30.0, flip=2),
     "nvarguscamerasrc sensor-id=1 sensor-mode=2 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! "
     "nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
     "appsink drop=true max-buffers=1 sync=false"),
    ("usb", PipelineRequest("/dev/video2", {}, 640, 480, 30.0, pixel_format="yuyv"),
     "v4l2src device=/dev/video2 ! video/x-raw,format=YUY2,width=640,height=480,framerate=30/1 ! videoconvert ! "
     "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"),
    ("gst", PipelineRequest("videotestsrc ! appsink", {}, 640, 480, 30.0), "videotestsrc ! appsink"),
])
def test_each_kind_builds_its_pipeline(name, request_, expected):
    assert source_kind(name).build(request_) == expected


def test_rtsp_builder_reads_latency_and_protocols():
    pipeline = source_kind("rtsp").build(PipelineRequest("rtsp://cam/s", {"latency": "50", "protocols": "tcp"},
                                                         0, 0, 30.0))
    assert pipeline.startswith("rtspsrc location=rtsp://cam/s latency=50 protocols=tcp ! decodebin ! ")
    with pytest.raises(SourceError, match="whole number"):
        source_kind("rtsp").build(PipelineRequest("rtsp://cam/s", {"latency": "soon"}, 0, 0, 30.0))


@pytest.mark.parametrize("name, location, described", [
    ("csi", "0", "csi://0"), ("usb", "/dev/video1", "/dev/video1"), ("test", "", "test:// (videotestsrc)"),
    ("gst", "videotestsrc ! appsink", "gst pipeline"), ("rtsp", "rtsp://cam/s", "rtsp://cam/s"),
])
def test_the_source_names_itself_from_its_descriptor(name, location, described):
    assert GStreamerSource(SourceSpec(name, location), SourceConfig()).describe() == described


def test_missing_plugin_messages_name_the_fix():
    assert "nvidia-l4t-gstreamer" in source_kind("csi").missing_plugins.format(missing="nvvidconv", first="nvvidconv")
    text = source_kind("usb").missing_plugins.format(missing="v4l2src", first="v4l2src")
    assert "gstreamer1.0-plugins-good" in text and "gst-inspect-1.0 v4l2src" in text


def test_a_kind_without_a_pipeline_is_refused_by_the_gstreamer_source():
    with pytest.raises(SourceError, match="cannot open a 'file' source"):
        GStreamerSource(SourceSpec("file", "clip.mp4"), SourceConfig()).open()
