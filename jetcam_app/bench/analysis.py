"""The bench's numbers from its workers' results: percentiles, throughput, speed-ups, verdicts, numeric diffs, raw CSV/JSON."""

import csv
import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, Optional

from ..verdict import percentiles, realtime_verdict
from .numeric_diff import compare_predictions, compare_raw, load_outputs

log = logging.getLogger(__name__)

SERIES = ("engine_ms", "pre_ms", "infer_ms", "post_ms", "e2e_ms")


def read_predictions(folder: str) -> List[Dict[str, Any]]:
    path = os.path.join(folder, "predictions.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def within_tolerance(reference, outputs, precision: str) -> Dict[str, Any]:
    """engines/crossval.py's verdict (the tolerance the engine tests use) on every frame, and the first problem."""
    import numpy as np
    import torch

    from ..inference.engines.crossval import TOLERANCES, cross_validate

    frames = min([ref.shape[0] for ref in reference] + [out.shape[0] for out in outputs])
    failing, first = 0, ""
    for i in range(frames):
        report = cross_validate(tuple(torch.from_numpy(np.array(ref[i])) for ref in reference),
                                tuple(torch.from_numpy(np.array(out[i])) for out in outputs), precision)
        if not report.ok:
            failing += 1
            first = first or "frame %d: %s" % (i, report.summary())
    rule = ", ".join("%s %g" % (k, v) for k, v in sorted(TOLERANCES[precision].items()))
    return {"ok": failing == 0, "frames": frames, "failing_frames": failing, "rule": rule, "first_problem": first}


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in percentiles(values).items()}


def analyse_row(row: Dict[str, Any], target_fps: float) -> None:
    """Percentiles, throughput and the real-time verdict of one finished row (in place)."""
    for name in SERIES:
        if row.get(name):
            row[name.replace("_ms", "_stats")] = _stats(row[name])
    frames = int(row.get("frames", 0))
    row["throughput_fps"] = {
        "engine": round(frames / row["engine_busy_s"], 2) if row.get("engine_busy_s") else None,
        "e2e": round(frames / row["e2e_pass_wall_s"], 2) if row.get("e2e_pass_wall_s") else None,
    }
    verdict = realtime_verdict(row.get("e2e_ms", []), target_fps, row.get("e2e_pass_wall_s", 0.0), frames)
    row["verdict"] = dataclasses.asdict(verdict)


def analyse(bench: Dict[str, Any], work_dir: str) -> None:
    """Fill every row with its statistics and its difference from the reference; write results.json and CSVs."""
    rows = bench["rows"]
    task = (bench.get("inputs") or {}).get("task", "detection")
    reference = next((r for r in rows if r.get("reference") and r["status"] == "ok"), None)
    ref_outputs = load_outputs(os.path.join(work_dir, reference["key"])) if reference else []
    ref_predictions = read_predictions(os.path.join(work_dir, reference["key"])) if reference else []
    for row in rows:
        if row["status"] != "ok":
            continue
        analyse_row(row, bench["target_fps"])
        if reference is None:
            row["diff_error"] = "no reference: cpu fp32 did not finish"
            continue
        folder = os.path.join(work_dir, row["key"])
        try:
            outputs = load_outputs(folder)
            row["diff"] = compare_raw(ref_outputs, outputs)
            row["tolerance"] = within_tolerance(ref_outputs, outputs, row["precision"])
        except (ValueError, OSError) as e:
            row["diff_error"] = "raw outputs not comparable: %s" % e
        row["task_diff"] = compare_predictions(task, ref_predictions, read_predictions(folder))
        ref_stats, stats = reference.get("e2e_stats") or {}, row.get("e2e_stats") or {}
        ref_engine, engine = reference.get("engine_stats") or {}, row.get("engine_stats") or {}
        row["speedup"] = {
            "e2e_p50": round(ref_stats["p50"] / stats["p50"], 3) if stats.get("p50") else None,
            "engine_p50": round(ref_engine["p50"] / engine["p50"], 3) if engine.get("p50") else None,
        }
    out_dir = bench["out_dir"]
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(bench, f, indent=1, sort_keys=True, default=str)
    write_latency_csv(rows, os.path.join(out_dir, "latency.csv"))
    write_summary_csv(rows, os.path.join(out_dir, "summary.csv"))


def write_latency_csv(rows: List[Dict[str, Any]], path: str) -> None:
    """One line per (row, frame): engine-only and end-to-end stage times in ms."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("backend", "precision", "frame") + SERIES)
        for row in rows:
            if row["status"] != "ok":
                continue
            for i in range(int(row.get("frames", 0))):
                writer.writerow([row["backend"], row["precision"], i] +
                                ["%.4f" % row[name][i] if i < len(row.get(name, [])) else "" for name in SERIES])


SUMMARY_COLUMNS = (
    "backend", "precision", "status", "load_s", "engine_p50_ms", "engine_p90_ms", "engine_p99_ms", "engine_max_ms",
    "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "e2e_max_ms", "engine_fps", "e2e_fps", "speedup_e2e_p50",
    "rss_peak_mb", "ram_used_delta_mb", "gpu_process_peak_mb", "torch_gpu_peak_mb", "max_abs_diff", "mean_abs_diff",
    "max_rel_diff", "cosine_min", "realtime_ok", "verdict", "error",
)


def summary_values(row: Dict[str, Any]) -> Dict[str, Any]:
    engine, e2e = row.get("engine_stats") or {}, row.get("e2e_stats") or {}
    diff = row.get("diff") or {}
    return {
        "backend": row["backend"], "precision": row["precision"], "status": row["status"], "load_s": row.get("load_s"),
        "engine_p50_ms": engine.get("p50"), "engine_p90_ms": engine.get("p90"), "engine_p99_ms": engine.get("p99"),
        "engine_max_ms": engine.get("max"), "e2e_p50_ms": e2e.get("p50"), "e2e_p90_ms": e2e.get("p90"),
        "e2e_p99_ms": e2e.get("p99"), "e2e_max_ms": e2e.get("max"),
        "engine_fps": (row.get("throughput_fps") or {}).get("engine"), "e2e_fps": (row.get("throughput_fps") or {}).get("e2e"),
        "speedup_e2e_p50": (row.get("speedup") or {}).get("e2e_p50"), "rss_peak_mb": row.get("rss_peak_mb"),
        "ram_used_delta_mb": row.get("ram_used_delta_mb"), "gpu_process_peak_mb": row.get("gpu_process_peak_mb"),
        "torch_gpu_peak_mb": row.get("torch_gpu_peak_mb"), "max_abs_diff": diff.get("max_abs"),
        "mean_abs_diff": diff.get("mean_abs"), "max_rel_diff": diff.get("max_rel"), "cosine_min": diff.get("cosine_min"),
        "realtime_ok": (row.get("verdict") or {}).get("ok"), "verdict": (row.get("verdict") or {}).get("text"),
        "error": (row.get("error") or "").splitlines()[0] if row.get("error") else "",
    }


def write_summary_csv(rows: List[Dict[str, Any]], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in summary_values(row).items()})
