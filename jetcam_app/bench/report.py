"""The bench report: report.md and a self-contained report.html (images embedded) built from the same blocks."""

import base64
import html
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .numeric_diff import REL_FLOOR, summary_line

log = logging.getLogger(__name__)

# ("h", level, text) | ("p", text) | ("list", items) | ("table", head, rows) | ("img", path, caption) | ("pre", text)
Block = Tuple[Any, ...]
SECTIONS = ("Answers", "Results", "Real-time verdict", "Numeric difference", "Unavailable and failed rows", "Plots",
            "Annotated frames", "Environment", "Method", "Raw data")


def _f(value: Optional[float], fmt: str = "%.1f") -> str:
    return "-" if value is None else fmt % value


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else "%.0f%%" % (100.0 * value)


def _get(row: Dict[str, Any], group: str, key: str) -> Any:
    """row[group][key], or None where the row has no such figure (an unfinished row, a CPU-only machine)."""
    return (row.get(group) or {}).get(key)


def _stats_text(stats: Optional[Dict[str, Any]]) -> str:
    if not stats:
        return "-"
    fmt = "%.2f" if (stats.get("p50") or 0) < 10 else "%.1f"
    return "/".join(_f(stats.get(k), fmt) for k in ("p50", "p90", "p99", "max"))


def _name(row: Dict[str, Any]) -> str:
    return "%s %s%s" % (row["backend"], row["precision"], " (reference)" if row.get("reference") else "")


def _timing_sentence(r: Dict[str, Any]) -> str:
    gpu_mb = r.get("gpu_process_peak_mb") or r.get("torch_gpu_peak_mb")
    return "%s: %s ms per frame end to end at p50 (%s ms p99; engine only %s ms), %s fps, peak RSS %s MB, GPU %s MB" % (
        _name(r), _f(_get(r, "e2e_stats", "p50")), _f(_get(r, "e2e_stats", "p99")), _f(_get(r, "engine_stats", "p50")),
        _f(_get(r, "throughput_fps", "e2e")), _f(r.get("rss_peak_mb"), "%.0f"), _f(gpu_mb, "%.0f"))


def _accelerated(backend: str) -> bool:
    """The backend's declared capability (an optimising runtime such as TensorRT), never its name."""
    from ..errors import ConfigError
    from ..inference.engines.base import capabilities_of

    try:
        return capabilities_of(backend).accelerated
    except (ConfigError, ImportError):  # a backend this build does not know: not an answer to question 2
        return False


def _first_line(text: Optional[str]) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no message"


def not_run_accelerated(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Every accelerated backend without a finished row, and why: its row's error, or that it was not asked for."""
    from ..registry import BACKENDS

    out = []
    asked = {r["backend"] for r in rows}
    for r in rows:
        if r["status"] != "ok" and _accelerated(r["backend"]):
            out.append("%s: not run (%s: %s)" % (_name(r), r["status"], _first_line(r.get("error"))))
    for backend in BACKENDS.choices():
        if backend not in asked and _accelerated(backend):
            out.append("%s: not run (not asked for; add it to --backends)" % backend)
    return out


def _answers(bench: Dict[str, Any]) -> List[Block]:
    rows = bench["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    plain = [r for r in ok if not _accelerated(r["backend"])]
    accelerated = [r for r in ok if _accelerated(r["backend"])]
    not_run = not_run_accelerated(rows)
    fast = ["%s (speed-up x%s)" % (_timing_sentence(r), _f(_get(r, "speedup", "e2e_p50"), "%.2f")) for r in accelerated]
    diffs = ["%s: %s" % (_name(r), summary_line(r.get("diff"), r.get("task_diff"))) for r in ok if not r.get("reference")]
    verdicts = ["%s: %s" % (_name(r), "yes" if r["verdict"]["ok"] else "no") for r in ok]
    onnx_file = str((bench.get("options") or {}).get("model", "")).lower().endswith(".onnx")
    items = [
        ("**1. Time and memory without optimisation (ONNX Runtime on the CPU: a .onnx file has no PyTorch model, so "
         "the cpu row runs the file there, and it is the reference of the diff):** " if onnx_file else
         "**1. Time and memory without optimisation (PyTorch):** ")
        + ("; ".join(_timing_sentence(r) for r in plain) or "no PyTorch row finished"),
        "**2. Time and memory with TensorRT and the other accelerated backends:** " + "; ".join(fast + not_run or ["none asked for"]),
        "**3. How much the outputs change on the same input:** " + ("; ".join(diffs) or "no backend besides the reference finished"),
        "**4. Real-time at %g fps:** " % bench["target_fps"] + ("; ".join(verdicts) or "nothing finished")
        + " (%s)" % LEAVES_OUT,
    ]
    return [("h", 2, "Answers"), ("list", items)]


def _results(bench: Dict[str, Any]) -> List[Block]:
    head = ["backend", "precision", "status", "load s", "engine ms p50/p90/p99/max", "end to end ms p50/p90/p99/max",
            "pre / infer / post ms p50", "engine fps", "e2e fps", "speed-up e2e", "RSS peak MB", "RAM rise MB",
            "GPU MB (process / torch peak)"]
    body = []
    for r in bench["rows"]:
        if r["status"] != "ok":
            body.append([r["backend"], r["precision"], r["status"]] + ["-"] * (len(head) - 3))
            continue
        stages = "/".join(_f(_get(r, k, "p50"), "%.2f") for k in ("pre_stats", "infer_stats", "post_stats"))
        speedup = _get(r, "speedup", "e2e_p50")
        gpu = "%s / %s" % (_f(r.get("gpu_process_peak_mb"), "%.0f"), _f(r.get("torch_gpu_peak_mb"), "%.0f"))
        body.append([r["backend"], r["precision"], r["status"], _f(r.get("load_s"), "%.2f"),
                     _stats_text(r.get("engine_stats")), _stats_text(r.get("e2e_stats")), stages,
                     _f(_get(r, "throughput_fps", "engine")), _f(_get(r, "throughput_fps", "e2e")),
                     "-" if speedup is None else "x%.2f" % speedup, _f(r.get("rss_peak_mb"), "%.0f"),
                     _f(r.get("ram_used_delta_mb"), "%.0f"), gpu])
    return [("h", 2, "Results"), ("table", head, body)]


LEAVES_OUT = ("timed without drawing, sinks and logs; `run.py` on the same video also counts those, so it can say "
              "no where a row here fits its budget with little to spare")


def what_was_timed(bench: Dict[str, Any]) -> str:
    """What the bench's end-to-end time covers and leaves out, and whether the fused CUDA graph was timed."""
    graph = bench["options"].get("cuda_graph")
    graph_text = ("CUDA rows replayed the fused CUDA graph, as `run.py --backend cuda` does by default" if graph else
                  "the fused CUDA graph was not timed: CUDA rows ran the eager stages (pre, infer, post one after the "
                  "other), as `run.py --backend cuda --no-cuda-graph` does")
    return ("What is timed: each frame's preprocess + infer + postprocess, one frame at a time, from frames decoded "
            "in advance. Left out: decoding and capture, drawing the overlay, the sinks (window, recording, web "
            "page) and the per-frame logs, which the app's own verdict includes (its per-frame time is pre + infer "
            "+ post + draw + sink). %s." % (graph_text[0].upper() + graph_text[1:]))


def _verdicts(bench: Dict[str, Any]) -> List[Block]:
    ok = [r for r in bench["rows"] if r["status"] == "ok"]
    text = ("Judged on the end-to-end time per frame (pre + infer + post) against the budget 1000 / %g = %.1f ms (%s): "
            "real-time when p99 fits the budget and the sustained rate reaches 95%% of the target, the app's rule. "
            % (bench["target_fps"], 1000.0 / bench["target_fps"], bench["target_origin"])) + what_was_timed(bench)
    items = []
    for r in ok:
        verdict = r["verdict"]
        over = "; %s of frames over budget" % _pct(verdict.get("share_over_budget")) if verdict["ok"] else ""
        p99 = _get(r, "e2e_stats", "p99")
        budget_ms = 1000.0 / bench["target_fps"]
        if verdict["ok"] and p99 is not None and p99 > 0.8 * budget_ms:
            over += ("; p99 uses %.0f%% of the budget: with drawing and sinks the app may not keep up"
                     % (100.0 * p99 / budget_ms))
        items.append("%s: %s%s" % (_name(r), verdict["text"], over))
    return [("h", 2, "Real-time verdict"), ("p", text), ("list", items or ["no row finished"])]


def _numeric(bench: Dict[str, Any]) -> List[Block]:
    task = (bench.get("inputs") or {}).get("task", "detection")
    ok = [r for r in bench["rows"] if r["status"] == "ok"]
    head = ["backend", "precision", "max abs", "mean abs", "max rel", "cosine min / mean", "within tolerance"]
    head += {"classification": ["top-1 agree", "top-5 agree", "top-5 overlap", "top-1 prob diff max"],
             "pose": ["keypoints judged", "px error mean / max", "PCK@0.05", "score diff max"],
             "segmentation": ["mask IoU mean / min", "area change max"]}.get(
        task, ["matched / ref boxes", "mean IoU", "label agree", "score diff mean / max", "missing", "extra"])
    body = []
    for r in ok:
        d, t, tol = r.get("diff") or {}, r.get("task_diff") or {}, r.get("tolerance") or {}
        line = [r["backend"], r["precision"], _f(d.get("max_abs"), "%.3g"), _f(d.get("mean_abs"), "%.3g"),
                _f(d.get("max_rel"), "%.3g"), "%s / %s" % (_f(d.get("cosine_min"), "%.6f"), _f(d.get("cosine_mean"), "%.6f")),
                _tolerance_text(tol) if tol else r.get("diff_error", "-")]
        if task == "classification":
            line += [_pct(t.get("top1_agreement")), _pct(t.get("top5_agreement")), _pct(t.get("top5_overlap")),
                     _f(t.get("top1_score_diff_max"), "%.3g")]
        elif task == "pose":
            line += [str(t.get("keypoints", "-")), "%s / %s" % (_f(t.get("px_error_mean"), "%.3g"),
                                                              _f(t.get("px_error_max"), "%.3g")),
                     _pct(t.get("pck")), _f(t.get("score_diff_max"), "%.3g")]
        elif task == "segmentation":
            line += ["%s / %s" % (_f(t.get("mean_iou"), "%.4f"), _f(t.get("min_iou"), "%.4f")),
                     _pct(t.get("area_change_max"))]
        else:
            line += ["%s / %s" % (t.get("matched", "-"), t.get("reference_boxes", "-")), _f(t.get("mean_iou"), "%.4f"),
                     _pct(t.get("label_agreement")), "%s / %s" % (_f(t.get("score_diff_mean"), "%.3g"), _f(t.get("score_diff_max"), "%.3g")),
                     str(t.get("missing", "-")), str(t.get("extra", "-"))]
        body.append(line)
    text = ("Every backend ran the same CPU fp32 preprocessed tensors (cast to its input type); differences are in the "
            "network's raw outputs, concatenated per frame. Max rel counts only elements with |reference| > %g. "
            "Within tolerance: engines/crossval.py's rule (the engine tests' own) on every frame. " % REL_FLOOR
            + {"pose": "Keypoints the reference scores >= 0.3 are judged: their distance in frame pixels, and PCK@0.05 "
                       "(within 5% of the larger side of the reference person's box).",
               "segmentation": "Mask IoU per frame from predictions.jsonl's run-length encodings at frame size."}.get(
                task, "Boxes are matched one to one at IoU >= 0.5, label-agnostic; missing = reference boxes without "
                      "a match, extra = this backend's unmatched boxes."))
    return [("h", 2, "Numeric difference"), ("p", text), ("table", head, body)]


def _tolerance_text(tol: Dict[str, Any]) -> str:
    if tol.get("ok"):
        return "yes, %d/%d frames (%s)" % (tol["frames"], tol["frames"], tol.get("rule", ""))
    return "no, %d of %d frames (%s)" % (tol["failing_frames"], tol["frames"], tol.get("first_problem", "")[:160])


def _round_trips(bench: Dict[str, Any]) -> List[Block]:
    """Rows served by a remote server: the engine-only round trip split by the server's statistics."""
    rows = [r for r in bench["rows"] if r["status"] == "ok" and r.get("round_trip_split")]
    if not rows:
        return []
    head = ["row", "round trip ms", "network + serialisation ms", "server queue ms", "server compute ms", "mean batch"]
    table = [[_name(r)] + [_f(r["round_trip_split"].get(k), "%.2f") for k in ("round_trip_ms", "network_ms", "queue_ms",
                                                                             "compute_ms", "mean_batch")] for r in rows]
    return [("h", 2, "Round trip to the server"), ("table", head, table),
            ("p", "Means per request over the engine-only pass; server figures from Triton's statistics API.")]


def _problems(bench: Dict[str, Any]) -> List[Block]:
    items = ["%s: **%s** - %s" % (_name(r), r["status"], (r.get("error") or "no message").strip().splitlines()[0])
             for r in bench["rows"] if r["status"] != "ok"]
    return [("h", 2, "Unavailable and failed rows"), ("list", items or ["none: every row finished"])]


def _method(bench: Dict[str, Any]) -> List[Block]:
    opts = bench["options"]
    items = [
        "Frames decoded once from the source and preprocessed once on the CPU in fp32 by the model's adapter; "
        "every (backend, precision) then runs in its own process on those same inputs.",
        "%d warm-up iterations before each timed pass are excluded. Engine only: infer + device synchronize on the "
        "shared preprocessed tensor. End to end: the app's own inference stages, one frame at a time: the adapter's "
        "preprocess (on the backend's device) + infer + postprocess (decoding, NMS or top-k), or with --cuda-graph "
        "the fused CUDA graph where the backend allows it%s." % (opts["warmup"], " (on)" if opts.get("cuda_graph") else ""),
        "Throughput: frames / time spent in infer (engine) and frames / wall time of the end-to-end pass (e2e).",
        "Memory: peak process RSS and system RAM in use sampled every 50 ms (on a Jetson the GPU shares this RAM), "
        "this process's GPU memory from jtop or NVML where available, torch.cuda.max_memory_allocated for torch.",
        "Load: time of engine.load (TensorRT: build or load from the cache, whichever happened).",
        what_was_timed(bench),
        "Annotated frames: the frames where the reference found the most detections (classifiers: evenly spaced).",
    ]
    return [("h", 2, "Method"), ("list", items)]


def _raw(bench: Dict[str, Any]) -> List[Block]:
    items = ["`results.json`: every row, every per-frame time, every statistic",
             "`summary.csv`: one line per row", "`latency.csv`: one line per row and frame",
             "`environment.json`: the machine and library versions",
             "`work/<backend>_<precision>/`: each worker's result.json, predictions.jsonl and worker.log"]
    return [("h", 2, "Raw data"), ("list", items)]


def build_blocks(bench: Dict[str, Any], plots: Sequence[Tuple[str, str, str]], env: Sequence[Tuple[str, str]]) -> List[Block]:
    opts, inputs = bench["options"], bench.get("inputs") or {}
    title = "Benchmark: %s on %s" % (opts["model"], inputs.get("source", opts["source"]))
    intro = ("%s; %s frames (%s) of %s, warm-up %d; target %g fps (%s); %.0f s in all.%s%s" % (
        bench["started"], inputs.get("frames", 0), "x".join(str(v) for v in reversed(inputs.get("image_hw", []))) or "-",
        inputs.get("source", opts["source"]), opts["warmup"], bench["target_fps"], bench["target_origin"],
        bench["duration_s"], " RANDOM WEIGHTS: timings only, outputs meaningless." if opts.get("random_weights") else "",
        " INTERRUPTED (Ctrl-C): the rows below are what finished." if bench.get("interrupted") else ""))
    if bench.get("error"):
        intro += " STOPPED BY AN ERROR: %s" % bench["error"]
    blocks = [("h", 1, title), ("p", intro)]  # type: List[Block]
    for part in (_answers, _results, _verdicts, _numeric, _round_trips, _problems):
        blocks += part(bench)
    charts = [p for p in plots if not p[0].startswith("frame_")]
    frames = [p for p in plots if p[0].startswith("frame_")]
    blocks.append(("h", 2, "Plots"))
    blocks += [("img", path, caption) for _, path, caption in charts] or [("p", "no row finished: nothing to plot")]
    blocks.append(("h", 2, "Annotated frames"))
    blocks += [("img", path, caption) for _, path, caption in frames] or [("p", "no row finished: no frames to show")]
    blocks += [("h", 2, "Environment"), ("table", ["", ""], [list(pair) for pair in env])]
    blocks += _method(bench) + _raw(bench)
    return blocks


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base_dir: str) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join("- " + item for item in block[1]))
        elif kind == "table":
            out.append("\n".join(["| " + " | ".join(_md_cell(h) for h in block[1]) + " |",
                                  "|" + "---|" * len(block[1])] +
                                 ["| " + " | ".join(_md_cell(c) for c in line) + " |" for line in block[2]]))
        elif kind == "img":
            out.append("![%s](%s)\n\n*%s*" % (block[2], os.path.relpath(block[1], base_dir), block[2]))
        elif kind == "pre":
            out.append("```\n%s\n```" % block[1])
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then the two markdown marks the blocks use: **bold** and `code`."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def to_html(blocks: Sequence[Block]) -> str:
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 6px}"
             "th{background:#eee}img{max-width:100%;border:1px solid #ddd}figcaption{font-style:italic;font-size:13px}")
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title><style>%s</style></head><body>"
           % (html.escape(next((b[2] for b in blocks if b[0] == "h"), "bench")), style)]
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("<h%d>%s</h%d>" % (block[1], _inline(block[2]), block[1]))
        elif kind == "p":
            out.append("<p>%s</p>" % _inline(block[1]))
        elif kind == "list":
            out.append("<ul>%s</ul>" % "".join("<li>%s</li>" % _inline(item) for item in block[1]))
        elif kind == "table":
            out.append("<table><tr>%s</tr>%s</table>" % ("".join("<th>%s</th>" % html.escape(str(h)) for h in block[1]),
                       "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(str(c)) for c in line) for line in block[2])))
        elif kind == "img":
            mime = "image/jpeg" if block[1].endswith(".jpg") else "image/png"
            with open(block[1], "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            out.append("<figure><img src='data:%s;base64,%s' alt='%s'><figcaption>%s</figcaption></figure>"
                       % (mime, data, html.escape(block[2]), html.escape(block[2])))
        elif kind == "pre":
            out.append("<pre>%s</pre>" % html.escape(block[1]))
    out.append("</body></html>")
    return "\n".join(out)


def write_report(bench: Dict[str, Any], samples: Dict[int, Any], class_names: Sequence[str], work_dir: str) -> Dict[str, str]:
    """report.md, report.html, environment.json and plots/ in bench['out_dir']; returns their paths."""
    from .environment import collect_environment
    from .analysis import read_predictions
    from .plots import make_plots

    out_dir = bench["out_dir"]
    env = collect_environment(bench["rows"])
    with open(os.path.join(out_dir, "environment.json"), "w") as f:
        json.dump(dict(env), f, indent=1)
    predictions = {r["key"]: read_predictions(os.path.join(work_dir, r["key"])) for r in bench["rows"] if r["status"] == "ok"}
    plots = make_plots(bench, predictions, samples, class_names, os.path.join(out_dir, "plots"))
    blocks = build_blocks(bench, plots, env)
    paths = {"md": os.path.join(out_dir, "report.md"), "html": os.path.join(out_dir, "report.html")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(to_markdown(blocks, out_dir))
    with open(paths["html"], "w", encoding="utf-8") as f:
        f.write(to_html(blocks))
    return paths
