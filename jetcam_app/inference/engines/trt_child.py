"""The child process of a TensorRT build: a builder that crashes or is killed for memory takes only the child down.

Why: on a 4 GB Jetson the kernel's OOM killer ends the building process, and with PyGObject's GStreamer loaded
TensorRT's ONNX parser can crash the process it runs in. The parent gets a clear EngineBuildError either way,
and the camera, logs and recording it holds are closed properly.
"""

import argparse
import logging
import sys

from ...errors import JetcamError
from .cache import atomic_write
from .trt_build import BuildSettings, build_serialized, load_api


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
