"""TensorRT builds in a child process: a builder that crashes or is killed for memory takes only the child down.

Why: on a 4 GB Jetson the kernel's OOM killer ends the building process, and with PyGObject's GStreamer loaded
TensorRT's ONNX parser can crash the process it runs in. The parent gets a clear EngineBuildError either way,
and the camera, logs and recording it holds are closed properly.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile

from ...errors import EngineBuildError, JetcamError

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build one TensorRT engine (used by jetcam_app's trt backend).")
    p.add_argument("--module", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--error-file", required=True)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--target-cc")
    p.add_argument("--timing-cache")
    p.add_argument("--label", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .cache import atomic_write
    from .trt_build import BuildSettings, build_serialized, load_api

    try:
        api = load_api(args.module)
        settings = BuildSettings(precision=args.precision, workspace_mb=args.workspace_mb, target_cc=args.target_cc,
                                 timing_cache_path=args.timing_cache)
        atomic_write(args.out, build_serialized(api, args.onnx, settings, label=args.label))
        return 0
    except KeyboardInterrupt:
        message = "the TensorRT build of %s was cancelled (Ctrl-C); nothing was cached" % args.label
    except JetcamError as e:
        message = str(e)
    with open(args.error_file, "w") as f:
        f.write(message)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
