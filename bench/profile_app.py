"""Profile the app's main thread with cProfile: python bench/profile_app.py --model nanodet --backend cuda ...

Prints the functions that take the most time per frame, to find the pipeline's own overhead."""

import argparse
import cProfile
import pstats
import tempfile

from common import add_app_arguments, app_overrides  # also puts the repository on sys.path

from jetcam_app.config import SourceConfig, load_config  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_app_arguments(p)
    p.add_argument("--source", default=SourceConfig().uri)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--triton-url", help="--backend triton: the server")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        config = load_config(None, app_overrides(args, args.source, **{
            "pipeline.max_frames": args.frames, "output.out_dir": out, "output.headless": True},
            **({"engine.triton_url": args.triton_url} if args.triton_url else {})))
        profiler = cProfile.Profile()
        profiler.enable()
        summary = Pipeline(config).run()
        profiler.disable()
    print("fps %.1f; stage p50 ms: %s" % (summary["fps"], ", ".join(
        "%s %.2f" % (k, v["p50"] or 0) for k, v in summary["stages_ms"].items())))
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
