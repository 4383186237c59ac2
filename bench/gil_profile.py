"""Where the GIL goes in a run: py-spy samples only the thread holding it (--gil), by thread and by function.

    python bench/gil_profile.py [--rate 250] [--top 15] [--raw out.txt] -- run.py --headless --source a.mp4 ...

Every thread of the app (capture, inference, emitter, the web page) needs the GIL for its Python; when one process
serves many cameras, the sum of their Python is what the process can do. This says whose it is. Needs py-spy
(`pip install py-spy`, or its wheel carried to a machine without internet; found on PATH or next to this Python).
Counts are samples (--rate a second); nothing is asserted. With --wall every thread is sampled, idle or not: where
each thread's time goes (waiting for frames, the GPU, a queue or the GIL included), as shares of its own samples.
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

THREAD = re.compile(r"^thread \(\w+\): ([^;]*);")
NUMBERED = re.compile(r"[-_]?\d+$")  # capture-s3, Thread-12: one group per kind of thread


def find_py_spy() -> str:
    for candidate in (shutil.which("py-spy"), os.path.join(os.path.dirname(sys.executable), "py-spy"),
                      "/tmp/site/bin/py-spy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("py-spy not found: pip install py-spy (or put its wheel's binary on PATH)")


def parse(path: str) -> List[Tuple[str, List[str], int]]:
    """[(thread name, frames outermost first, samples)] from py-spy's raw (collapsed stack) output."""
    stacks = []
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            match = THREAD.match(stack)
            if not match or not count.isdigit():
                continue
            frames = stack.split(";")[1:]
            stacks.append((match.group(1), frames, int(count)))
    return stacks


def short(frame: str) -> str:
    """'Overlay.annotate (jetcam_app/output/overlay.py:120)' -> 'Overlay.annotate (overlay.py)'"""
    name, _, where = frame.partition(" (")
    return "%s (%s)" % (name, os.path.basename(where.split(":")[0])) if where else name


def during_run(stacks: List[Tuple[str, List[str], int]], loop: str) -> List[Tuple[str, List[str], int]]:
    """The main thread's samples inside the pipeline's loop only (not imports, model loading or the summary);
    the other threads' all (they live for the run)."""
    return [(t, frames, n) for t, frames, n in stacks
            if t != "MainThread" or any(frame.split(" (")[0].endswith(loop) for frame in frames)]


def run_seconds(command: List[str]) -> float:
    """The run's own wall time from the summary.json of the command's --out folder, where it has one; else 0."""
    if "--out" not in command[:-1]:
        return 0.0
    try:
        with open(os.path.join(command[command.index("--out") + 1], "summary.json")) as f:
            return float(json.load(f)["wall_s"])
    except (OSError, ValueError, KeyError):
        return 0.0


def label(frames: List[str], wall: bool) -> str:
    """The innermost function; with --wall, also the app's innermost one that led there (which wait it is)."""
    if not frames:
        return "?"
    leaf = short(frames[-1])
    if not wall:
        return leaf
    own = next((f for f in reversed(frames) if "jetcam_app" in f), None)
    return leaf if own is None or own == frames[-1] else "%s < %s" % (leaf, short(own))


def report(stacks: List[Tuple[str, List[str], int]], top: int, rate: int, seconds: float, wall: bool = False) -> None:
    total = sum(n for _, _, n in stacks) or 1
    if seconds > 0 and not wall:  # a sample is taken only while some thread holds the GIL
        print("the GIL was held %.0f%% of the run's %.1f s" % (100.0 * total / (rate * seconds), seconds))
    by_group = collections.Counter()  # type: collections.Counter
    leaves = collections.defaultdict(collections.Counter)  # type: Dict[str, collections.Counter]
    for thread, frames, n in stacks:
        group = NUMBERED.sub("-*", thread) if NUMBERED.search(thread) else thread
        by_group[group] += n
        leaves[group][label(frames, wall)] += n
    print("%s samples: %d" % ("thread" if wall else "GIL", total))
    for group, n in by_group.most_common():
        if wall:  # each group's own time: shares of its samples
            print("\n%-24s %d samples" % (group, n))
        else:
            print("\n%-24s %5.1f%% of the GIL" % (group, 100.0 * n / total))
        for leaf, m in leaves[group].most_common(top):
            print("    %5.1f%%  %s" % (100.0 * m / (n if wall else total), leaf))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=250, help="samples a second")
    p.add_argument("--top", type=int, default=12, help="functions shown per thread group")
    p.add_argument("--raw", help="keep py-spy's raw output here")
    p.add_argument("--loop", default="._loop", help="the main thread counts only inside this function")
    p.add_argument("--wall", action="store_true", help="every thread's time, idle or not, instead of the GIL's")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the app's arguments (run.py ...)")
    args = p.parse_args()
    command = [c for c in args.command if c != "--"]
    if not command:
        p.error("give the command after --, e.g. -- run.py --headless --source a.mp4")
    raw = args.raw or os.path.join(tempfile.mkdtemp(prefix="gil_profile_"), "raw.txt")
    subprocess.run([find_py_spy(), "record", "--idle" if args.wall else "--gil", "--threads", "--nonblocking", "--rate", str(args.rate),
                    "--format", "raw", "-o", raw, "--", sys.executable] + command, check=False)
    report(during_run(parse(raw), args.loop), args.top, args.rate, run_seconds(command), args.wall)


if __name__ == "__main__":
    main()
