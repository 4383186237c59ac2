"""`run.py bench` and the bench scripts take the app's defaults from configs/default.yaml, gain the app's options
that change their numbers, and read capabilities instead of backend names."""

import argparse
import dataclasses
import json
import os
import sys

import pytest
import torch
from conftest import ROOT

from jetcam_app.bench.command import BenchOptions, ProgressBar, add_bench_arguments, options_from_args, run_worker
from jetcam_app.bench.command import Inputs
from jetcam_app.bench.report import _accelerated
from jetcam_app.bench.worker import sampled_device
from jetcam_app.config import EngineConfig, ModelConfig, PipelineConfig, SourceConfig
from jetcam_app.inference.engines.base import capabilities_of
from jetcam_app.registry import BACKENDS

sys.path.insert(0, os.path.join(ROOT, "bench"))

# BenchOptions field -> the app's default it must equal
APP_DEFAULTS = {
    "model": ModelConfig().name, "source": SourceConfig().uri, "target_fps": PipelineConfig().target_fps,
    "weights": ModelConfig().weights, "random_weights": ModelConfig().random_weights,
    "score_threshold": ModelConfig().score_threshold, "iou_threshold": ModelConfig().iou_threshold,
    "max_detections": ModelConfig().max_detections, "topk": ModelConfig().topk, "threads": EngineConfig().threads,
    "cuda_graph": PipelineConfig().cuda_graph, "trt_workspace_mb": EngineConfig().trt_workspace_mb,
    "cache_dir": EngineConfig().cache_dir, "backends": (EngineConfig().backend,),
    "precisions": (EngineConfig().precision,),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py bench")
    add_bench_arguments(parser)
    return parser


@pytest.mark.parametrize("name, expected", sorted(APP_DEFAULTS.items()))
def test_bench_options_default_to_the_apps_defaults(name, expected):
    assert getattr(BenchOptions(), name) == expected


def test_flags_not_given_give_the_bench_options_defaults():
    parsed = options_from_args(_parser().parse_args([]))
    assert dataclasses.replace(parsed, backends=tuple(parsed.backends), precisions=tuple(parsed.precisions)) \
        == BenchOptions()


def test_the_apps_output_changing_options_reach_the_bench():
    args = _parser().parse_args(["--iou-threshold", "0.3", "--score-threshold", "0.2", "--max-detections", "7",
                                 "--topk", "3", "--no-cuda-graph"])
    options = options_from_args(args)
    assert (options.iou_threshold, options.score_threshold, options.max_detections, options.topk,
            options.cuda_graph) == (0.3, 0.2, 7, 3, False)


def test_help_shows_the_defaults():
    text = _parser().format_help()
    text = text.split("options:" if "options:" in text else "optional arguments:", 1)[1]  # Python < 3.10's heading
    for flag, value in (("--iou-threshold", ModelConfig().iou_threshold), ("--cuda-graph", PipelineConfig().cuda_graph),
                        ("--frames", BenchOptions().frames), ("--model", ModelConfig().name)):
        block = text.split("\n  " + flag, 1)[1].split("\n  --", 1)[0]
        assert "default: %s" % value in " ".join(block.split()), flag


def test_the_job_carries_cuda_graph_and_the_model_options(tmp_path):
    """A real worker process, given inputs that do not exist: it fails, but the job it ran is the bench's."""
    options = BenchOptions(cuda_graph=True, iou_threshold=0.3, topk=2, out_dir=str(tmp_path))
    inputs = Inputs(str(tmp_path / "missing.npz"), str(tmp_path / "missing.pt"), 1, None, "", (4, 4), "detection",
                    [], {})
    row = {"backend": "cpu", "precision": "fp32", "key": "cpu_fp32"}
    with open(os.devnull, "w") as quiet:
        result = run_worker(row, options, inputs, str(tmp_path), "cpu", ProgressBar(quiet))
    assert result["status"] == "failed" and "missing.npz" in result["error"]
    with open(str(tmp_path / "cpu_fp32" / "job.json")) as f:
        job = json.load(f)
    assert job["cuda_graph"] is True
    assert (job["model"]["iou_threshold"], job["model"]["topk"]) == (0.3, 2)


@pytest.mark.parametrize("backend", BACKENDS.choices())
def test_capabilities_decide_what_is_sampled_and_what_counts_as_accelerated(backend):
    capabilities = capabilities_of(backend)
    expected = {"cpu": "cpu", "cuda": "cuda"}.get(capabilities.device,
                                                   "cuda" if torch.cuda.is_available() else "cpu")
    assert sampled_device(backend) == expected
    assert _accelerated(backend) is capabilities.accelerated


def test_onnxruntime_on_a_machine_without_cuda_samples_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert sampled_device("onnxruntime") == "cpu"


def test_bench_scripts_take_the_apps_defaults():
    from common import add_app_arguments

    parser = argparse.ArgumentParser()
    add_app_arguments(parser)
    args = parser.parse_args([])
    assert (args.model, args.backend, args.precision, args.cuda_graph, args.random_weights, args.draw_threads) == (
        ModelConfig().name, EngineConfig().backend, EngineConfig().precision, PipelineConfig().cuda_graph,
        ModelConfig().random_weights, PipelineConfig().draw_threads)
    parser = argparse.ArgumentParser()
    add_app_arguments(parser, model="ssd300_vgg16")
    assert parser.parse_args([]).model == "ssd300_vgg16"
