"""Compare a backend's outputs with the PyTorch CPU reference, with tolerances per precision."""

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch

# Each output must point the same way as the reference (cosine similarity, which also catches wrong
# outputs of tiny magnitude that an absolute tolerance lets through) and be elementwise close:
# |out - ref| <= atol + rtol * |ref|, as torch.allclose. fp16 keeps ~3 decimal digits and its rounding
# accumulates through deep networks, so it may instead stay within 2 % of the output's range; its
# direction is only judged for outputs above 1e-3 (smaller ones, e.g. the logits of some random-weight
# networks, are below fp16's resolution and come out as zeros, within atol).
TOLERANCES = {
    "fp32": {"rtol": 1e-4, "atol": 1e-4, "min_cosine": 0.9999, "cosine_above": 0.0},
    "fp16": {"rtol": 1e-2, "atol": 1e-2, "min_cosine": 0.999, "cosine_above": 1e-3, "max_abs_of_range": 0.02},
}


@dataclass
class OutputReport:
    index: int
    shape: tuple
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    ok: bool

    def line(self) -> str:
        return "output %d %s: max abs %.3g, mean abs %.3g, max rel %.3g, cosine %.6f -> %s" % (
            self.index, "x".join(str(d) for d in self.shape), self.max_abs, self.mean_abs, self.max_rel,
            self.cosine, "ok" if self.ok else "MISMATCH")


@dataclass
class CrossValReport:
    precision: str
    outputs: List[OutputReport] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(o.ok for o in self.outputs)

    def summary(self) -> str:
        lines = list(self.problems) + [o.line() for o in self.outputs]
        return "; ".join(lines)

    def to_json(self) -> Dict[str, object]:
        return {"precision": self.precision, "ok": self.ok, "problems": self.problems,
                "outputs": [o.__dict__ for o in self.outputs]}


def _compare(index: int, ref: torch.Tensor, out: torch.Tensor, tol: Dict[str, float]) -> OutputReport:
    ref64 = ref.detach().to("cpu", torch.float64).reshape(-1)
    out64 = out.detach().to("cpu", torch.float64).reshape(-1)
    diff = (out64 - ref64).abs()
    finite = bool(torch.isfinite(out64).all())
    max_abs = float(diff.max()) if diff.numel() else 0.0
    mean_abs = float(diff.mean()) if diff.numel() else 0.0
    max_rel = float((diff / ref64.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    norms = float(ref64.norm() * out64.norm())
    if norms > 0:
        cosine = float(torch.dot(ref64, out64)) / norms
    else:  # both all-zero is a match; only one all-zero is not
        cosine = 1.0 if max_abs == 0.0 else 0.0
    elementwise = bool((diff <= tol["atol"] + tol["rtol"] * ref64.abs()).all())
    ref_max = float(ref64.abs().max()) if ref64.numel() else 0.0
    close = elementwise
    if not close and "max_abs_of_range" in tol:
        close = max_abs <= tol["max_abs_of_range"] * max(ref_max, 1.0)
    aligned = cosine >= tol["min_cosine"] or ref_max <= tol["cosine_above"]
    ok = close and aligned
    return OutputReport(index, tuple(ref.shape), max_abs, mean_abs, max_rel, cosine, ok and finite)


def cross_validate(reference_outputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                   precision: str = "fp32") -> CrossValReport:
    """Per-output max/mean absolute error, max relative error and cosine similarity against the
    reference, and whether each is within the tolerance of `precision` (fp32 or fp16)."""
    if precision not in TOLERANCES:
        raise ValueError("unknown precision %r; use one of %s" % (precision, ", ".join(TOLERANCES)))
    tol = TOLERANCES[precision]
    if isinstance(reference_outputs, torch.Tensor):
        reference_outputs = (reference_outputs,)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    report = CrossValReport(precision)
    if len(reference_outputs) != len(outputs):
        report.problems.append("%d outputs, the reference has %d" % (len(outputs), len(reference_outputs)))
    for i, (ref, out) in enumerate(zip(reference_outputs, outputs)):
        if tuple(ref.shape) != tuple(out.shape):
            report.problems.append("output %d has shape %s, the reference %s" % (i, tuple(out.shape), tuple(ref.shape)))
            continue
        report.outputs.append(_compare(i, ref, out, tol))
    return report
