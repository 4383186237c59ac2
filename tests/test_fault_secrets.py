"""Secrets stay secret: an RTSP URL's password and the web page's token appear in no output (stderr, the run
folder, summary.json's config echo, the page, /stats.json, --check, --debug's request lines), while the real URL
still reaches the camera; and the RTSP advice the app gives, followed literally, does what it says."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from jetcam_app.cli import main
from jetcam_app.errors import ConfigError, mask_secrets, mask_secrets_in
from jetcam_app.output.http_server import TOKEN_ENV, resolve_token
from jetcam_app.sources import gst_runner
from jetcam_app.sources.kinds import PipelineRequest, source_kind
from jetcam_app.sources.spec import parse_source

from conftest import ROOT

PASSWORD, TOKEN = "hunter2", "t0k3n-s3cr3t"
RUN = [sys.executable, os.path.join(ROOT, "run.py")]
MODEL = ["--model", "mobilenet_v2", "--random-weights", "--headless"]


def everything_under(folder) -> str:
    texts = []
    for path in glob.glob(os.path.join(str(folder), "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                texts.append(f.read().decode("utf-8", "replace"))
    return "\n".join(texts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8", "replace")


def serve_until_fetched(proc, urls):
    """Each url's text once the run serves them and has processed a frame (the last url: /stats.json), and a request
    without the token refused; then Ctrl-C.
    The deadline is a liveness bound, not a timed assertion."""
    texts, deadline = {}, time.time() + 180
    try:
        while len(texts) < len(urls) and time.time() < deadline and proc.poll() is None:
            try:
                for url in urls:
                    texts[url] = fetch(url)
                if not json.loads(texts[urls[-1]]).get("processed"):
                    texts.clear()  # wait for a processed frame: every log and figure then says something
                    time.sleep(0.3)
            except (OSError, urllib.error.URLError):
                texts.clear()
                time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token is in force
            fetch(urls[-1].partition("?")[0])
        assert refused.value.code == 401
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return texts, out, err


@pytest.mark.parametrize("text, masked", [
    ("rtsp://admin:hunter2@127.0.0.1:9/x", "rtsp://admin:***@127.0.0.1:9/x"),
    ("rtspsrc location=rtsp://admin:hunter2@cam latency=200 ! decodebin", "rtspsrc location=rtsp://admin:***@cam "
     "latency=200 ! decodebin"),
    ("bad RTSP URL 'rtsps://u:p@ss@cam:554/s'", "bad RTSP URL 'rtsps://u:***@cam:554/s'"),  # an unencoded '@'
    ("GET /stats.json?token=abc&x=1 HTTP/1.1", "GET /stats.json?token=***&x=1 HTTP/1.1"),
    ("http://127.0.0.1:8080/ and admin@example.com", "http://127.0.0.1:8080/ and admin@example.com"),
    ("rtsp://admin@cam/x", "rtsp://admin@cam/x"),  # a user without a password: nothing to hide
])
def test_mask_secrets_hides_passwords_and_tokens_only(text, masked):
    assert mask_secrets(text) == masked
    assert mask_secrets_in({"a": [text, (text,)], "n": 3}) == {"a": [masked, (masked,)], "n": 3}


def test_the_rtsp_advice_followed_literally_sends_tcp_and_keeps_the_option_from_the_server():
    kind = source_kind("rtsp")
    advice = re.search(r"add (\S*protocols=tcp)", kind.causes)
    assert advice, kind.causes
    url = "rtsp://admin:%s@cam.local:554/live?channel=1" % PASSWORD
    for form in (advice.group(1), "?protocols=tcp", "&protocols=tcp"):  # the advice, and the query form users try
        given = url + form if not form.startswith("?") else url.replace("?", form + "&", 1)
        spec = parse_source(given)
        assert spec.params.get("protocols") == "tcp", (given, spec)
        assert "protocols" not in spec.location and spec.location.startswith("rtsp://admin:%s@" % PASSWORD)
        assert "channel=1" in spec.location  # the camera's own query keys are sent as they were
        pipeline = kind.build(PipelineRequest(spec.location, spec.params, 0, 0, 0.0))
        assert re.search(r"rtspsrc location=\S+ latency=\d+ protocols=tcp ", pipeline), pipeline
        assert "location=%s " % spec.location in pipeline  # the real URL only where the connection needs it


def test_an_unreachable_rtsp_source_shows_its_password_nowhere(tmp_path):
    out = tmp_path / "out"
    uri = "rtsp://admin:%s@127.0.0.1:9/x" % PASSWORD
    run = subprocess.run(RUN + ["--source", uri, "--timeout", "1", "--reconnect-attempts", "0", "--headless",
                                "--out", str(out), "--debug"],
                         cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         timeout=300)
    assert run.returncode == 2, run.stderr
    if gst_runner.gobject_reason() is None or gst_runner.opencv_has_gstreamer():  # else: no runner, said so
        assert "error: rtsp://admin:***@127.0.0.1:9/x" in run.stderr, run.stderr  # still named, password masked
    assert PASSWORD not in run.stdout + run.stderr
    assert PASSWORD not in everything_under(out)
    check = subprocess.run(RUN + ["--source", uri, "--check"], cwd=str(tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert check.returncode == 0 and "admin:***@127.0.0.1:9/x" in check.stdout, check.stdout + check.stderr
    assert PASSWORD not in check.stdout + check.stderr
    doctor = subprocess.run(RUN + ["doctor", "--source", uri], cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert "admin:***@127.0.0.1:9/x" in doctor.stdout and PASSWORD not in doctor.stdout + doctor.stderr


def test_a_token_from_the_environment_shows_nowhere(tmp_path):
    out, port = tmp_path / "out", free_port()
    env = dict(os.environ, **{TOKEN_ENV: TOKEN})
    proc = subprocess.Popen(RUN + ["--source", "test://320x240@15?live=1", "--http", str(port), "--out", str(out),
                                   "--debug"] + MODEL, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    base = "http://127.0.0.1:%d/" % port
    texts, stdout, stderr = serve_until_fetched(proc, [base + "?token=" + TOKEN, base + "stats.json?token=" + TOKEN])
    assert proc.returncode == 0, stderr
    assert "token=***" in stderr  # --debug's request lines are there, the token masked in them
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["output"]["http_token"] == "***"
    for where, text in dict(texts, stdout=stdout, stderr=stderr, run_folder=everything_under(out)).items():
        assert TOKEN not in text, where


def test_the_token_from_a_file_or_the_environment_and_help_that_points_away_from_ps(tmp_path, capsys, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert resolve_token(None, str(token_file), {}) == TOKEN
    assert resolve_token(None, None, {TOKEN_ENV: TOKEN}) == TOKEN
    assert resolve_token("flag", None, {TOKEN_ENV: TOKEN}) == "flag"
    with pytest.raises(ConfigError, match="both set"):
        resolve_token("flag", str(token_file), {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for bad, says in ((empty, "is empty; fix: write the token on its first line"),
                      (tmp_path / "absent", "cannot read output.http_token_file")):
        code = main(["--source", "test://", "--http", "8080", "--http-token-file", str(bad), "--check"])
        err = capsys.readouterr().err
        assert code == 2 and [l for l in err.splitlines() if l.startswith("error: ")] == [
            l for l in err.splitlines() if says in l], err
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert main(["--source", "test://", "--http", "8080", "--check"]) == 0
    printed = capsys.readouterr()
    assert "(token required)" in printed.out and TOKEN not in printed.out + printed.err
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--http-token-file PATH" in help_text and "$JETCAM_HTTP_TOKEN" in help_text and "ps" in help_text


RTSP_SERVER = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer.new()
server.set_address("127.0.0.1")
server.set_service("0")
factory = GstRtspServer.RTSPMediaFactory.new()
factory.set_launch("( videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=15/1 "
                   "! jpegenc ! rtpjpegpay name=pay0 pt=26 )")
factory.set_shared(True)
auth, token = GstRtspServer.RTSPAuth(), GstRtspServer.RTSPToken()
token.set_string("media.factory.role", "user")
auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[1], sys.argv[2]), token)
server.set_auth(auth)
permissions = GstRtspServer.RTSPPermissions()
permissions.add_permission_for_role("user", "media.factory.access", True)
permissions.add_permission_for_role("user", "media.factory.construct", True)
factory.set_permissions(permissions)
server.get_mount_points().add_factory("/x", factory)
server.attach(None)
print(server.get_bound_port(), flush=True)
GLib.MainLoop().run()
"""


def _rtsp_server_python():
    for python in (sys.executable, "/usr/bin/python3"):
        probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
        if os.path.exists(python) and subprocess.run([python, "-c", probe], stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.DEVNULL).returncode == 0:
            return python
    return None


def test_a_working_rtsp_run_masks_the_password_on_the_page_and_in_every_file(tmp_path):
    """The real GStreamer RTSP server, asking for the password: the run gets frames, so the real URL reached it."""
    python = _rtsp_server_python()
    if python is None:
        pytest.skip("needs the GStreamer RTSP server (sudo apt install gir1.2-gst-rtsp-server-1.0)")
    if gst_runner.gobject_reason() is not None and not gst_runner.opencv_has_gstreamer():
        pytest.skip("needs a GStreamer runner here: %s" % gst_runner.gobject_reason())
    script = tmp_path / "rtsp_server.py"
    script.write_text(RTSP_SERVER)
    server = subprocess.Popen([python, str(script), "admin", PASSWORD], stdout=subprocess.PIPE,
                              universal_newlines=True)
    try:
        rtsp_port = int(server.stdout.readline())
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        out, port = tmp_path / "out", free_port()
        uri = "rtsp://admin:%s@127.0.0.1:%d/x" % (PASSWORD, rtsp_port)
        proc = subprocess.Popen(RUN + ["--source", uri, "--timeout", "30", "--http", str(port), "--http-token-file",
                                       str(token_file), "--out", str(out), "--debug"] + MODEL,
                                cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
        base = "http://127.0.0.1:%d/" % port
        texts, stdout, stderr = serve_until_fetched(proc, [base + "?token=" + TOKEN,
                                                           base + "stats.json?token=" + TOKEN])
    finally:
        server.kill()
        server.communicate()
    assert proc.returncode == 0, stderr
    masked = "rtsp://admin:***@127.0.0.1:%d/x" % rtsp_port
    stats = json.loads(texts[base + "stats.json?token=" + TOKEN])
    assert stats["source"] == masked, stats
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"] == masked and summary["config"]["source"]["uri"] == masked
    assert summary["config"]["output"]["http_token"] == "***" and summary["frames"]["processed"] > 0
    with open(str(out / "predictions.jsonl")) as f:
        assert json.loads(f.readline())["source"] == masked
    for where, text in dict(texts, stdout=stdout, stderr=stderr, run_folder=everything_under(out)).items():
        assert PASSWORD not in text and TOKEN not in text, where
