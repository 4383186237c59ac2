"""The parent side of a TensorRT build in a child process: start `python -m ...trt_child` and turn its exit into
an EngineBuildError (killed for memory, crashed, or failed with a message). trt_child.py says why a child."""

import os
import signal
import subprocess
import sys
import tempfile

from ...errors import EngineBuildError

OOM_HINT = ("lower --trt-workspace-mb, add swap, close the desktop (sudo systemctl isolate multi-user.target) "
            "or build with --precision fp16")


def build_in_child(api, onnx_path: str, settings, label: str) -> bytes:
    """build_serialized() run by `python -m jetcam_app.inference.engines.trt_child`; its log goes to this stderr."""
    with tempfile.TemporaryDirectory(prefix="jetcam-trt-") as tmp:
        out, error_file = os.path.join(tmp, "engine.bin"), os.path.join(tmp, "error.txt")
        cmd = [sys.executable, "-m", "jetcam_app.inference.engines.trt_child", "--module", api.module_name, "--onnx", onnx_path,
               "--out", out, "--error-file", error_file, "--precision", settings.precision,
               "--workspace-mb", str(settings.workspace_mb), "--label", label]
        if settings.target_cc:
            cmd += ["--target-cc", settings.target_cc]
        if settings.timing_cache_path:
            cmd += ["--timing-cache", settings.timing_cache_path]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        code = subprocess.run(cmd, env=env).returncode
        if code == 0 and os.path.isfile(out):
            with open(out, "rb") as f:
                return f.read()
        if os.path.isfile(error_file):
            with open(error_file) as f:
                raise EngineBuildError(f.read().strip())
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "signal %d" % -code
            raise EngineBuildError("the TensorRT build of %s was killed (%s%s); fix: %s" % (
                label, name, ", most likely out of memory" if -code == signal.SIGKILL else "", OOM_HINT))
        raise EngineBuildError("the TensorRT build of %s failed (exit code %d, see the log above); fix: %s"
                               % (label, code, OOM_HINT))
