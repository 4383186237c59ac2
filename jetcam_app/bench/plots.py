"""The bench report's pictures: latency CDF / histogram / timeline, speed-up and memory bars, numeric diffs, annotated frames."""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # no display on a headless Jetson or in CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TILE_WIDTH_PX = 480
Plot = Tuple[str, str, str]  # (name, file path, caption)


def _plain_numbers(axis) -> None:
    """Log-scale tick labels as plain numbers (5, 10, 50 ms), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: "%g" % v))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _legend_outside(ax) -> None:
    """The legend to the right of the axes, where it never covers a curve."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def label_of(row: Dict[str, Any]) -> str:
    return "%s %s%s" % (row["backend"], row["precision"], " (ref)" if row.get("reference") else "")


def _save(fig, folder: str, name: str) -> str:
    path = os.path.join(folder, name + ".png")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _budget_line(ax, budget_ms: Optional[float], vertical: bool) -> None:
    if not budget_ms:
        return
    if vertical:
        ax.axvline(budget_ms, color="red", linestyle=":", label="budget %.1f ms" % budget_ms)
    else:
        ax.axhline(budget_ms, color="red", linestyle=":", label="budget %.1f ms" % budget_ms)


def latency_cdf(rows: Sequence[Dict[str, Any]], budget_ms: Optional[float], folder: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n, row in enumerate(rows):
        color = "C%d" % (n % 10)
        for key, style, kind in (("e2e_ms", "-", "end to end"), ("engine_ms", "--", "engine")):
            values = np.sort(np.asarray(row.get(key) or [], float))
            if values.size:
                ax.plot(values, np.arange(1, values.size + 1) / values.size, style, color=color,
                        label="%s, %s" % (label_of(row), kind))
    _budget_line(ax, budget_ms, vertical=True)
    ax.set_xscale("log")
    _plain_numbers(ax.xaxis)
    ax.set_xlabel("latency per frame (ms, log scale)")
    ax.set_ylabel("share of frames")
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(ax)
    ax.set_title("Latency CDF (solid: pre + infer + post; dashed: engine only)")
    return _save(fig, folder, "latency_cdf")


def latency_histograms(rows: Sequence[Dict[str, Any]], budget_ms: Optional[float], folder: str) -> str:
    cols = min(3, len(rows))
    lines = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.0 * lines), squeeze=False)
    for ax, row in zip(axes.ravel(), rows):
        both = list(row.get("engine_ms") or []) + list(row.get("e2e_ms") or [])
        low, high = (min(both), max(both)) if both else (0.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1.0, 31)  # shared, so both series are visible
        for key, color, kind in (("engine_ms", "C0", "engine"), ("e2e_ms", "C1", "end to end")):
            values = row.get(key) or []
            if values:
                ax.hist(values, bins=bins, alpha=0.6, color=color, label=kind)
        _budget_line(ax, budget_ms, vertical=True)
        ax.set_title(label_of(row), fontsize=9)
        ax.set_xlabel("ms")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    fig.suptitle("Latency histograms per backend")
    fig.tight_layout()
    return _save(fig, folder, "latency_hist")


def timeline(rows: Sequence[Dict[str, Any]], budget_ms: Optional[float], folder: str) -> str:
    fig, ax = plt.subplots(figsize=(9, 4))
    for n, row in enumerate(rows):
        values = row.get("e2e_ms") or []
        ax.plot(range(len(values)), values, color="C%d" % (n % 10), linewidth=1, label=label_of(row))
    _budget_line(ax, budget_ms, vertical=False)
    ax.set_yscale("log")
    _plain_numbers(ax.yaxis)
    ax.set_xlabel("frame")
    ax.set_ylabel("end-to-end ms (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(ax)
    ax.set_title("Per-frame end-to-end latency")
    return _save(fig, folder, "timeline")


def _bars(ax, labels: List[str], series: Dict[str, List[Optional[float]]]) -> None:
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for n, (name, values) in enumerate(series.items()):
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + n * width - 0.4 + width / 2, heights, width, label=name)
        for bar, value in zip(bars, values):
            text = "n/a" if value is None else ("%.0f" % value if abs(value) >= 100 else "%.3g" % value)
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    _legend_outside(ax)
    ax.grid(True, axis="y", alpha=0.3)


def speedup_bars(rows: Sequence[Dict[str, Any]], folder: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 4))
    series = {
        "engine p50": [(r.get("speedup") or {}).get("engine_p50") for r in rows],
        "end to end p50": [(r.get("speedup") or {}).get("e2e_p50") for r in rows],
    }
    _bars(ax, [label_of(r) for r in rows], series)
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.set_ylabel("speed-up over cpu fp32 (x)")
    ax.set_title("Speed-up against the PyTorch CPU fp32 reference (median latency ratio)")
    return _save(fig, folder, "speedup")


def memory_bars(rows: Sequence[Dict[str, Any]], folder: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 4))
    series = {
        "process RSS peak": [r.get("rss_peak_mb") for r in rows],
        "system RAM in use, rise": [r.get("ram_used_delta_mb") for r in rows],
        "GPU memory, process peak": [r.get("gpu_process_peak_mb") for r in rows],
        "torch allocator peak": [r.get("torch_gpu_peak_mb") for r in rows],
    }
    _bars(ax, [label_of(r) for r in rows], series)
    ax.set_ylabel("MB")
    ax.set_title("Memory per backend (n/a: not measurable here)")
    return _save(fig, folder, "memory")


def diff_histograms(rows: Sequence[Dict[str, Any]], folder: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 4))
    for n, row in enumerate(rows):
        hist = (row.get("diff") or {}).get("log10_abs_hist")
        if not hist:
            continue
        edges = np.asarray(hist["edges"])
        counts = np.asarray(hist["counts"], float)
        total = counts.sum() + hist["zeros"]
        note = "%s (%.1f%% exactly equal)" % (label_of(row), 100.0 * hist["zeros"] / total if total else 100.0)
        if counts.sum() == 0:
            ax.plot([], [], color="C%d" % (n % 10), label=note + ", no differences")
            continue
        ax.step(edges[:-1], counts / total, where="post", color="C%d" % (n % 10), label=note)
    ax.set_xlabel("log10 |output - reference| per element")
    ax.set_ylabel("share of elements")
    _legend_outside(ax)
    ax.grid(True, alpha=0.3)
    ax.set_title("Raw-output differences against cpu fp32 (same preprocessed inputs)")
    return _save(fig, folder, "numeric_diff")


def _result_from(record: Dict[str, Any], task: str, class_names: Sequence[str]):
    from ..types import Classification, Detections

    if task == "classification":
        topk = record.get("topk", [])
        return Classification(np.asarray([c["id"] for c in topk], np.int64),
                              np.asarray([c["score"] for c in topk], np.float32), class_names)
    return Detections(np.asarray(record.get("boxes", []), np.float32).reshape(-1, 4),
                      np.asarray(record.get("scores", []), np.float32),
                      np.asarray(record.get("labels", []), np.int64), class_names)


def annotated_frames(rows: Sequence[Dict[str, Any]], predictions: Dict[str, List[Dict[str, Any]]],
                     samples: Dict[int, np.ndarray], task: str, class_names: Sequence[str], folder: str) -> List[Plot]:
    """One picture per sample frame: the reference and each backend's result side by side (JPEG)."""
    import cv2

    from ..config import OverlayConfig
    from ..output.overlay import Overlay

    overlay = Overlay(OverlayConfig(enabled=True, hud=False))
    out = []  # type: List[Plot]
    for index, image in sorted(samples.items()):
        tiles = []
        for row in rows:
            records = {r.get("frame"): r for r in predictions.get(row["key"], [])}
            if index not in records:
                continue
            tile = overlay.annotate(image.copy(), _result_from(records[index], task, class_names))
            scale = TILE_WIDTH_PX / float(tile.shape[1])
            tile = cv2.resize(tile, (TILE_WIDTH_PX, int(round(tile.shape[0] * scale))), interpolation=cv2.INTER_AREA)
            banner = np.full((28, TILE_WIDTH_PX, 3), 32, np.uint8)
            cv2.putText(banner, label_of(row), (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(np.vstack([banner, tile]))
        if not tiles:
            continue
        per_line = min(3, len(tiles))
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % per_line)
        grid = np.vstack([np.hstack(tiles[i:i + per_line]) for i in range(0, len(tiles), per_line)])
        path = os.path.join(folder, "frame_%05d.jpg" % index)
        cv2.imwrite(path, grid, [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(("frame_%05d" % index, path, "Frame %d: the reference and each backend, on the same input" % index))
    return out


def make_plots(bench: Dict[str, Any], predictions: Dict[str, List[Dict[str, Any]]], samples: Dict[int, np.ndarray],
               class_names: Sequence[str], folder: str) -> List[Plot]:
    """Every picture of the report, for the rows that finished; [] when none did."""
    os.makedirs(folder, exist_ok=True)
    rows = [r for r in bench["rows"] if r["status"] == "ok"]
    if not rows:
        return []
    budget_ms = 1000.0 / bench["target_fps"] if bench.get("target_fps") else None
    task = (bench.get("inputs") or {}).get("task", "detection")
    plots = [
        ("latency_cdf", latency_cdf(rows, budget_ms, folder), "Latency CDF per backend, with the frame budget"),
        ("latency_hist", latency_histograms(rows, budget_ms, folder), "Latency histograms per backend"),
        ("timeline", timeline(rows, budget_ms, folder), "Per-frame end-to-end latency (warm-up excluded)"),
        ("speedup", speedup_bars(rows, folder), "Speed-up over the PyTorch CPU fp32 reference"),
        ("memory", memory_bars(rows, folder), "Peak memory per backend"),
        ("numeric_diff", diff_histograms(rows, folder), "Distribution of raw-output differences"),
    ]  # type: List[Plot]
    shown = busiest_frames(rows, predictions, samples, task, int(bench["options"].get("sample_frames", 3)))
    plots += annotated_frames(rows, predictions, shown, task, class_names, folder)
    return plots


def busiest_frames(rows: Sequence[Dict[str, Any]], predictions: Dict[str, List[Dict[str, Any]]],
                   samples: Dict[int, np.ndarray], task: str, count: int) -> Dict[int, np.ndarray]:
    """The `count` sample frames where the reference row (else the first row) found the most detections, in frame
    order; classifiers always have a result, so theirs stay evenly spaced."""
    if len(samples) <= count:
        return dict(samples)
    indices = sorted(samples)
    if task == "classification":
        picks = {indices[int(round(k * (len(indices) - 1) / max(1, count - 1)))] for k in range(count)}
        return {i: samples[i] for i in sorted(picks)}
    row = next((r for r in rows if r.get("reference")), rows[0])
    boxes = {r.get("frame"): len(r.get("labels", [])) for r in predictions.get(row["key"], [])}
    picks = sorted(indices, key=lambda i: (-boxes.get(i, 0), i))[:count]
    return {i: samples[i] for i in sorted(picks)}
