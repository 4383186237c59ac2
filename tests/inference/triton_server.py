"""The real Triton server the triton tests talk to (PyTriton's bundled tritonserver, Python backend only, run from
.venv-triton: scripts/setup.sh --test makes it), why it cannot run here, and what those tests do with it."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from jetcam_app.cli import main
from jetcam_app.config import ROOT, EngineConfig, ModelConfig
from jetcam_app.triton.local_server import find_server


def server_missing():
    """Why the real server cannot run here (the reason the tests that need it skip with); None if it can."""
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        return "needs tritonclient: pip install -e '.[triton]'"
    try:
        find_server()
    except FileNotFoundError as e:
        return "needs a Triton server: %s" % e
    return None


SERVER_MISSING = server_missing()
needs_server = pytest.mark.skipif(SERVER_MISSING is not None, reason=str(SERVER_MISSING))
VIDEO = os.path.join(ROOT, "media", "bikes.mp4")
needs_video = pytest.mark.skipif(not os.path.isfile(VIDEO),
                                 reason="needs the sample video (scripts/setup.sh fetches it)")
# Real NanoDet weights where the set-up fetched them; random (seeded, the same in every process) otherwise.
WEIGHTS_ARGS = [] if os.path.isfile(os.path.join(ROOT, "models", "nanodet", "nanodet.json")) else ["--random-weights"]


def run_app(out, extra, capsys=None, frames=4):
    """The app on the sample video with NanoDet, headless, into `out`: (exit code, what it wrote to stderr)."""
    args = ["--source", VIDEO, "--model", "nanodet", "--max-frames", str(frames), "--headless", "--no-hud",
            "--out", str(out)] + WEIGHTS_ARGS + extra
    code = main(args)
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def engine_for(url, **kw):
    from jetcam_app.inference.engines.base import create_engine

    return create_engine(EngineConfig(backend="triton", triton_url=url, **kw))


def nanodet_core():
    from jetcam_app.inference.adapters.base import build_core, create_adapter

    adapter = create_adapter(ModelConfig(name="nanodet", random_weights=bool(WEIGHTS_ARGS)))
    return adapter, build_core(adapter)


def server_python(folder, site_paths):
    """A venv in `folder` of the server's own interpreter whose packages are those of `site_paths`, in that order (a
    .pth); skipped where that interpreter is another Python than this one (their packages do not mix)."""
    with open(os.path.join(os.path.dirname(find_server()["venv_bin"]), "pyvenv.cfg")) as f:
        home = dict(line.split(" = ", 1) for line in f.read().splitlines() if " = " in line)["home"]
    base = os.path.join(home, "python3")
    version = subprocess.run([base, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.strip()
    if version != "%d.%d" % sys.version_info[:2]:
        pytest.skip("the server's Python is %s, this one %d.%d: their packages do not mix"
                    % ((version,) + sys.version_info[:2]))
    subprocess.run([base, "-m", "venv", "--without-pip", folder], check=True)
    site = subprocess.run([os.path.join(folder, "bin", "python3"), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout.strip()
    with open(os.path.join(site, "app_packages.pth"), "w") as f:
        f.write("".join(path + "\n" for path in site_paths))
    return folder


def line_count(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def rows_by_source(path):
    """predictions.jsonl's rows ordered by source, then frame (several sources write them interleaved)."""
    with open(str(path)) as f:
        return sorted(f.read().splitlines(), key=lambda line: (json.loads(line)["source"], json.loads(line)["frame"]))


def run_through_an_outage(pipeline, server, timing: str, rows_first: int):
    """Run `pipeline` on a thread; once timing.csv has `rows_first` rows, kill `server`, start it again 1.5 s later
    (the live sources go on at 10 fps meanwhile) and return the run's summary."""
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=pipeline.run()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 120
    while line_count(timing) < 1 + rows_first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line_count(timing) >= 1 + rows_first, server.log_tail()
    server.stop(kill=True)
    time.sleep(1.5)
    server.start()
    runner.join(120)
    assert not runner.is_alive()
    return outcome["summary"]
