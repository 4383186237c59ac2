"""cross_validate: what passes and fails at each precision, table-driven."""

import pytest
import torch

from jetcam_app.inference.engines.crossval import cross_validate

torch.manual_seed(0)
REF = torch.randn(1, 100, 91) * 5


@pytest.mark.parametrize("precision, output, ok", [
    ("fp32", REF.clone(), True),
    ("fp32", REF + 5e-5, True),
    ("fp32", REF * (1 + 5e-5), True),
    ("fp32", REF + 1e-3, False),
    ("fp32", REF * 1e-6, False),  # tiny but wrong scale: atol alone would let it through, rtol does not
    ("fp32", -REF * 1e-9, False),  # tiny and pointing the other way
    ("fp16", REF.half().float(), True),
    ("fp16", REF + 0.05, True),  # within 2 % of the output's range
    ("fp16", REF + 0.5, False),
    ("fp16", REF[..., torch.randperm(91)], False),  # right values, wrong places
    ("fp32", REF.clone().fill_(float("nan")), False),
])
def test_tolerance_per_precision(precision, output, ok):
    report = cross_validate((REF,), (output,), precision)
    assert report.ok is ok, report.summary()


def test_tiny_outputs_underflowing_in_fp16_are_accepted_within_atol():
    ref = torch.randn(1, 1000) * 1e-9  # random-weight classifier logits: below fp16's resolution
    assert cross_validate(ref, ref.half().float(), "fp16").ok


def test_shape_and_count_mismatches_are_reported():
    report = cross_validate((REF, REF), (REF[:, :50],), "fp32")
    assert not report.ok
    assert "1 outputs, the reference has 2" in report.summary()
    assert "shape (1, 50, 91)" in report.summary()


def test_report_has_the_figures():
    report = cross_validate(REF, REF + 1e-5, "fp32")
    out = report.outputs[0]
    assert out.max_abs == pytest.approx(1e-5, rel=0.05) and out.mean_abs == pytest.approx(1e-5, rel=0.05)
    assert out.cosine == pytest.approx(1.0) and out.max_rel > 0
    assert report.to_json()["ok"] is True and "cosine" in report.summary()
    with pytest.raises(ValueError):
        cross_validate(REF, REF, "int8")
