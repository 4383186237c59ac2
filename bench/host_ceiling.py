"""Benchmark: what one process's host side can carry for N sources when the engine costs nothing.

    python bench/host_ceiling.py [--sources 8] [--frames 1000] [--size 320x240] [--out DIR]
    python bench/gil_profile.py -- bench/host_ceiling.py --sources 8 --out /tmp/hc   # whose Python it is

N copies of a video whose frames carry their index, replayed losslessly, through the multi-source pipeline with the
tests' index model (tests/multi/index_model.py: it reads a strip of pixels and sums 16 bits). What is left is the
capture threads, the scheduler, the batch stages' host work, the emitter and the logs, all sharing one GIL: the
aggregate rate here is a ceiling for any real model on this machine's CPU. Prints the rate; nothing is asserted.
"""

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "multi")]

from conftest import write_index_video  # noqa: E402
from index_model import IndexAdapter  # noqa: E402
from jetcam_app.config import SourceConfig, load_config  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402
from jetcam_app.sources.spec import create_source  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=8)
    p.add_argument("--frames", type=int, default=1000, help="frames a source")
    p.add_argument("--size", default="320x240", help="frame size WxH")
    p.add_argument("--out", help="the run folder (default: a temporary one)")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = tempfile.mkdtemp(prefix="host_ceiling_")
    video = write_index_video(os.path.join(work, "index.mp4"), n_frames=args.frames, size=(width, height))
    config = load_config(overrides={"output.out_dir": args.out or os.path.join(work, "out"), "output.headless": True,
                                    "output.exist_ok": True, "engine.threads": 1})
    sources = [("s%d" % i, create_source(SourceConfig(uri=video))) for i in range(args.sources)]
    summary = Pipeline(config, sources=sources, adapter=IndexAdapter()).run()
    print("%d sources of %s, %d frames each: %.1f frames/s in all (%.1f s)" % (
        args.sources, args.size, args.frames, summary["frames"]["processed"] / summary["wall_s"], summary["wall_s"]))


if __name__ == "__main__":
    main()
