"""Tracking quality: exact line and zone counts on the synthetic scenes, and MOTA / IDF1 / ID switches on MOT15
ground truth replayed as noisy detections, for ByteTrack and a greedy IoU tracker side by side.

    python bench/tracking_quality.py [--out docs/cpu-2core/tracking_quality.md] [--seeds 3]

The scenes (bench/tracking_scenes.py) go through SourceAnalytics as the pipeline would feed it. The MOT part reads
TUD-Campus and TUD-Stadtmitte (640x480, 25 fps) from the motmetrics wheel, drops, jitters and rescores the true
boxes and adds false positives with a seeded generator, and scores both trackers on the same detections. Measured,
never asserted (tests/test_tracking_bench.py checks a few properties).
"""

import argparse
import dataclasses
import os
import platform
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tracking_scenes  # noqa: E402  # also puts the repository on sys.path

from jetcam_app.analytics import assignment  # noqa: E402
from jetcam_app.analytics.bytetrack import ByteTracker  # noqa: E402
from jetcam_app.analytics.scene import SourceAnalytics  # noqa: E402
from jetcam_app.config import ModelConfig, TrackerConfig  # noqa: E402
from jetcam_app.types import Detections  # noqa: E402

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
MOT_FPS = 25.0
MOT_SIZE_WH = (640, 480)
SCORE_THRESHOLD = ModelConfig().score_threshold  # what is drawn; the tracker sees down to track_low_thresh


def tracker_config() -> TrackerConfig:
    return dataclasses.replace(TrackerConfig(), enabled=True)


# -- (a) the synthetic scenes -------------------------------------------------------------------------------------

class SceneResult(NamedTuple):
    lines: Dict[str, Dict[str, Dict[str, int]]]
    zones: Dict[str, Dict[str, int]]
    confirmed: int  # track IDs given: more than the scene's objects means a track was broken in two
    exact: bool


def run_scene(scene: tracking_scenes.Scene, config: Optional[TrackerConfig] = None) -> SceneResult:
    analytics = SourceAnalytics(scene.name, config or tracker_config(), scene.lines, scene.zones, scene.fps,
                                SCORE_THRESHOLD, on_event=lambda event: None)
    for i, f in enumerate(scene.frames):
        analytics.process(i, i / scene.fps, scene.size_wh, Detections(f.boxes, f.scores, f.labels,
                                                                      list(scene.class_names)))
    analytics.close()
    summary = analytics.summary()
    lines = {name: {d: dict(v[d]) for d in ("in", "out") if v[d]} for name, v in summary["lines"].items()}
    zones = {name: dict(v["entries"]) for name, v in summary["zones"].items()}
    expected = {name: {d: c for d, c in v.items() if c} for name, v in scene.expected_lines.items()}
    exact = lines == expected and zones == scene.expected_zones
    return SceneResult(lines, zones, summary["tracks"]["confirmed"], exact)


def _counts_text(lines, zones) -> str:
    def by_label(counts):
        return " ".join("%s=%d" % kv for kv in sorted(counts.items())) or "0"
    parts = ["%s in %s out %s" % (name, by_label(v.get("in", {})), by_label(v.get("out", {})))
             for name, v in sorted(lines.items())]
    parts += ["%s entries %s" % (name, by_label(v)) for name, v in sorted(zones.items())]
    return "; ".join(parts)


def scenes_table(scenes: Sequence[tracking_scenes.Scene]) -> List[str]:
    rows = ["| scene | expected | counted | exact | IDs / objects |", "|---|---|---|---|---|"]
    for scene in scenes:
        got = run_scene(scene)
        rows.append("| %s | %s | %s | %s | %d / %d |" % (
            scene.name, _counts_text(scene.expected_lines, scene.expected_zones), _counts_text(got.lines, got.zones),
            "yes" if got.exact else "**no**", got.confirmed, len(scene.movers)))
    return rows


# -- (b) MOT15 ground truth through a noisy detector --------------------------------------------------------------

class Noise(NamedTuple):
    name: str
    drop: float  # each true box missed with this probability
    jitter: float  # centre and size error, as a fraction of the box's size (one standard deviation)
    false_per_frame: float  # mean false positives a frame (Poisson)
    low_score: float  # share of true boxes scored in ByteTrack's low band (0.1-0.25)


NOISE_LEVELS = (Noise("clean", 0.0, 0.0, 0.0, 0.0), Noise("light", 0.1, 0.03, 0.5, 0.1),
                Noise("medium", 0.2, 0.06, 1.0, 0.2), Noise("heavy", 0.3, 0.10, 2.0, 0.3))
Frames = List[Tuple[np.ndarray, np.ndarray]]  # per frame: (ids (N,), boxes (N, 4) xyxy)


def load_ground_truth(sequence: str, name: str = "gt.txt") -> Frames:
    """A MOTChallenge file (frame,id,x,y,w,h,conf,...) of the motmetrics wheel, frame by frame from frame 1."""
    import motmetrics

    rows = np.loadtxt(os.path.join(os.path.dirname(motmetrics.__file__), "data", sequence, name), delimiter=",",
                      ndmin=2)
    frames = []
    for f in range(1, int(rows[:, 0].max()) + 1):
        r = rows[rows[:, 0] == f]
        frames.append((r[:, 1].astype(np.int64), np.concatenate([r[:, 2:4], r[:, 2:4] + r[:, 4:6]], 1)))
    return frames


def noisy_detections(truth: Frames, noise: Noise, rng: np.random.Generator) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(boxes, scores) per frame: the true boxes a detector of this quality would give, and its false positives."""
    sizes = np.concatenate([b[:, 2:] - b[:, :2] for _, b in truth])
    out = []
    for _, boxes in truth:
        keep = boxes[rng.random(len(boxes)) >= noise.drop]
        wh = keep[:, 2:] - keep[:, :2]
        centre = (keep[:, :2] + keep[:, 2:]) / 2 + rng.normal(0, noise.jitter, wh.shape) * wh
        wh = wh * np.exp(rng.normal(0, noise.jitter, wh.shape))
        true_boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1)
        scores = np.where(rng.random(len(keep)) < noise.low_score, rng.uniform(0.1, 0.25, len(keep)),
                          rng.uniform(0.5, 0.95, len(keep)))
        n_false = rng.poisson(noise.false_per_frame)
        fwh = sizes[rng.integers(0, len(sizes), n_false)]
        corner = rng.uniform(0, 1, (n_false, 2)) * np.maximum(np.subtract(MOT_SIZE_WH, fwh), 1)
        false_boxes = np.concatenate([corner, corner + fwh], 1)
        out.append((np.concatenate([true_boxes, false_boxes]).astype(np.float32),
                    np.concatenate([scores, rng.uniform(0.1, 0.7, n_false)]).astype(np.float32)))
    return out


class GreedyIoUTracker:
    """The baseline: each detection, best score first, takes the live track it overlaps most (IoU above min_iou);
    otherwise it starts a track with a new ID. No motion model, no probation; a track dies after max_missed frames
    unseen."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 25):
        self.min_iou, self.max_missed = min_iou, max_missed
        self.boxes = {}  # type: Dict[int, np.ndarray]
        self.missed = {}  # type: Dict[int, int]
        self.next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        live = list(self.boxes)
        overlap = assignment.iou_matrix(boxes, np.array([self.boxes[t] for t in live]).reshape(-1, 4))
        ids = np.full(len(boxes), -1, np.int64)
        for d in np.argsort(-scores, kind="stable"):
            row = overlap[d] if live else np.zeros(0)
            j = int(np.argmax(row)) if len(row) else -1
            if j >= 0 and row[j] > self.min_iou:
                ids[d] = live[j]
                overlap[:, j] = 0.0  # taken
            else:
                ids[d], self.next_id = self.next_id, self.next_id + 1
            self.boxes[int(ids[d])], self.missed[int(ids[d])] = boxes[d], -1
        for t in list(self.boxes):
            self.missed[t] += 1
            if self.missed[t] > self.max_missed:
                del self.boxes[t], self.missed[t]
        return ids


def run_bytetrack(detections, fps: float = MOT_FPS) -> Frames:
    tracker = ByteTracker(tracker_config(), fps)
    out = []
    for f, (boxes, scores) in enumerate(detections):
        ids = tracker.update(boxes, scores, np.zeros(len(scores), np.int64), f, f / fps).ids
        out.append((ids[ids > 0], boxes[ids > 0]))  # what the app draws with an ID
    return out


def run_greedy(detections, min_score: float, max_missed: int) -> Frames:
    tracker, out = GreedyIoUTracker(max_missed=max_missed), []
    for boxes, scores in detections:
        keep = scores >= min_score  # a tracker without a low-score stage gets the confident boxes only
        out.append((tracker.update(boxes[keep], scores[keep]), boxes[keep]))
    return out


def mot_scores(truth: Frames, hypotheses: Frames) -> Dict[str, float]:
    """MOTA, IDF1 and ID switches, a match needing IoU >= 0.5 (the IoU computed here: motmetrics 1.4.0's
    iou_matrix uses np.asfarray, gone in numpy 2)."""
    import motmetrics

    acc = motmetrics.MOTAccumulator(auto_id=True)
    for (gt_ids, gt_boxes), (hyp_ids, hyp_boxes) in zip(truth, hypotheses):
        distance = 1.0 - assignment.iou_matrix(gt_boxes, hyp_boxes)
        acc.update(gt_ids.tolist(), hyp_ids.tolist(), np.where(distance <= 0.5, distance, np.nan))
    result = motmetrics.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="run")
    return {"mota": float(result["mota"].iloc[0]), "idf1": float(result["idf1"].iloc[0]),
            "switches": int(result["num_switches"].iloc[0])}


def evaluate(sequence: str, noise: Noise, seed: int) -> Dict[str, Dict[str, float]]:
    """{"bytetrack": scores, "greedy": scores} on one noisy replay of the sequence."""
    truth = load_ground_truth(sequence)
    detections = noisy_detections(truth, noise, np.random.default_rng(seed))
    config = tracker_config()
    max_missed = int(round(config.track_buffer * MOT_FPS / 30.0))  # the same buffer as ByteTrack's
    return {"bytetrack": mot_scores(truth, run_bytetrack(detections)),
            "greedy": mot_scores(truth, run_greedy(detections, config.track_high_thresh, max_missed))}


def harness_check(sequence: str = "TUD-Campus") -> Dict[str, float]:
    """motmetrics' own test.txt hypotheses through mot_scores (its Readme: MOTA 52.6 %, IDF1 55.8 %, 7 switches)."""
    return mot_scores(load_ground_truth(sequence), load_ground_truth(sequence, "test.txt"))


def mot_table(seeds: int) -> List[str]:
    rows = ["| sequence | noise | MOTA ByteTrack | MOTA greedy | IDF1 ByteTrack | IDF1 greedy | ID sw ByteTrack "
            "| ID sw greedy |", "|---|---|---|---|---|---|---|---|"]
    for sequence in SEQUENCES:
        for level, noise in enumerate(NOISE_LEVELS):
            runs = [evaluate(sequence, noise, 1000 * level + s) for s in range(seeds)]
            mean = {t: {k: float(np.mean([r[t][k] for r in runs])) for k in ("mota", "idf1", "switches")}
                    for t in ("bytetrack", "greedy")}
            rows.append("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |" % (
                sequence, noise.name, mean["bytetrack"]["mota"], mean["greedy"]["mota"], mean["bytetrack"]["idf1"],
                mean["greedy"]["idf1"], mean["bytetrack"]["switches"], mean["greedy"]["switches"]))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="also write the report here (markdown)")
    p.add_argument("--seeds", type=int, default=3, help="noisy replays per sequence and level, averaged")
    args = p.parse_args()
    import motmetrics

    config = tracker_config()
    check = harness_check()
    noise_rows = ["| %s | %d %% | %.2f | %.1f | %d %% |" % (n.name, round(100 * n.drop), n.jitter, n.false_per_frame,
                                                         round(100 * n.low_score)) for n in NOISE_LEVELS]
    lines = ["# Tracking quality", "",
             "`python bench/tracking_quality.py --seeds %d`; Python %s, numpy %s, motmetrics %s, assignment: %s."
             % (args.seeds, platform.python_version(), np.__version__, motmetrics.__version__,
                assignment.SOLVER_NAME), "",
             "## Synthetic scenes: counts against the exact truth", "",
             "SourceAnalytics with the default tracker: section (%s), score threshold %.2f. Counts are per class; "
             "\"IDs / objects\" is the confirmed track IDs against the true objects (more: a track broke in two)."
             % (", ".join("%s %s" % (f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
                          if f.name not in ("enabled", "trail_frames")), SCORE_THRESHOLD), ""]
    lines += scenes_table(tracking_scenes.all_scenes())
    lines += ["", "## MOT15 ground truth replayed through a noisy detector", "",
              "Mean of %d seeded replays per row. ByteTrack gets every box down to %.2f; the greedy IoU tracker (IoU > "
              "0.3, no motion model, no probation, a track kept %d frames unseen) gets the boxes scoring %.2f or more. "
              "A match needs IoU >= 0.5." % (args.seeds, config.track_low_thresh,
                                            int(round(config.track_buffer * MOT_FPS / 30.0)), config.track_high_thresh),
              "", "| noise | drop | jitter (of box size) | false positives / frame | low-band scores |",
              "|---|---|---|---|---|"] + noise_rows + [""]
    lines += mot_table(args.seeds)
    lines += ["", "Harness check: motmetrics' own TUD-Campus test.txt through the same scoring gives MOTA %.3f, "
              "IDF1 %.3f, %d ID switches (its Readme: 0.526, 0.558, 7)." % (check["mota"], check["idf1"],
                                                                           check["switches"])]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
