"""`run.py export-triton`: write a Triton model repository for a model (ONNX, Python-backend or TensorRT plan): the core
alone (float in, raw out), or with the frame's normalisation and the decoding + NMS inside (served.py)."""

import argparse
import logging
import os
import shutil
import sys
import tempfile
from typing import List, Optional

from ..config import PRECISIONS, ModelConfig
from ..errors import ConfigError, EngineBuildError, JetcamError
from ..registry import MODELS
from .pbtxt import INSTANCE_KINDS, RUNTIMES, TensorSpec, model_config
from .served import INPUT_KINDS, OUTPUT_KINDS, choose_wire

log = logging.getLogger(__name__)
VARIANTS = tuple(RUNTIMES)
PYTHON_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_model.py")
PLAN_HINT = ("fix: run export-triton --variant plan on the machine that serves it, with the TensorRT version of its "
             "Triton (pip install tensorrt, or JetPack's python3-libnvinfer), or serve --variant onnx")


def triton_model_name(model: str, precision: str) -> str:
    """The model's name in the repository, which `--backend triton` asks for unless --triton-model says otherwise."""
    return model if precision == "fp32" else "%s_%s" % (model, precision)


def _plan_api():
    """NVIDIA TensorRT (Triton's tensorrt_plan backend runs its plans, not TensorRT-RTX's), checked before any export."""
    from ..inference.engines.trt_build import load_api

    try:
        return load_api("tensorrt")
    except JetcamError as e:
        raise EngineBuildError("the plan variant needs NVIDIA TensorRT's Python module 'tensorrt', which does not "
                               "import here (%s); %s" % (getattr(e, "reason", e), PLAN_HINT)) from e


def _plan_bytes(api, onnx_path: str, precision: str, max_batch: int, label: str) -> bytes:
    from ..inference.engines.trt_build import BuildSettings, build_serialized

    return build_serialized(api, onnx_path, BuildSettings(precision=precision, max_batch=max_batch), label)


def _save_torchscript(core, example, path: str, strict_fp32: bool, on_gpu: bool = False) -> None:
    """`on_gpu` (the served graphs): traced on CUDA where this machine has it, since a trace fixes the device of the
    tensors it creates (the static NMS makes some), and model.py runs model.pt on a GPU instance."""
    import copy
    import warnings

    import torch

    if on_gpu and torch.cuda.is_available():
        core, example = copy.deepcopy(core).cuda(), example.cuda()
    elif on_gpu:
        log.warning("triton: model.pt traced on the CPU, where a GPU instance's model.py cannot run it (it falls "
                    "back to model.onnx); fix: run export-triton --torchscript on the GPU machine")

    # The trace bakes cuDNN's allow_tf32 into every convolution; fp32 must stay fp32 on the server's GPU (measured on
    # an H200: 0.005 max abs against eager CUDA when traced with the default, True).
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = not strict_fp32
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # TorchScript is deprecated in torch >= 2.9 but is what a server's torch (and Triton's libtorch backend)
            # loads.
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(core.eval(), example, check_trace=False)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    traced.save(path)


def export_repository(model: ModelConfig, out_dir: str, precision: str = "fp32", variant: str = "onnx",
                      max_batch_size: int = 8, instances: int = 1, instance_kind: str = "auto",
                      cache_dir: str = "models/cache", name: Optional[str] = None, torchscript: bool = False,
                      input_kind: str = "auto", output_kind: str = "auto",
                      exact_threshold: Optional[float] = None) -> str:
    """Write <out_dir>/<name>/{config.pbtxt, 1/model.onnx|model.plan[, 1/model.py]}; return the model's folder.

    `input_kind` float / `output_kind` raw: the ONNX is the export the onnxruntime and trt backends use; uint8 (or
    jpeg) / detections: the served graph of served.py (auto: those where the model can). Dimension 0 of every input
    and output is left free so the server can batch requests. `torchscript` (python variant): also the traced graph
    as model.pt, which model.py runs with torch on a GPU instance (a server whose Python has torch but no
    onnxruntime-gpu). `exact_threshold` (detections): the score from which the server's static NMS must prove its
    result exact (default: the app's default model.score_threshold, what it draws and logs; a lower export
    threshold, for a tracker's low boxes, keeps the boxes below it as the best candidates)."""
    from ..inference.adapters.base import build_core, create_adapter
    from ..inference.engines.onnx_export import export_onnx, output_shapes

    if variant not in VARIANTS:
        raise ConfigError("unknown Triton variant '%s'; choose one of: %s" % (variant, ", ".join(VARIANTS)))
    if precision not in PRECISIONS:
        raise ConfigError("unknown precision '%s'; choose one of: %s" % (precision, ", ".join(PRECISIONS)))
    if max_batch_size < 1 or instances < 1:
        raise ConfigError("--max-batch-size and --instances must be at least 1")
    plan_api = _plan_api() if variant == "plan" else None
    adapter = create_adapter(model)
    adapter.exact_threshold = exact_threshold if exact_threshold is not None else max(
        model.score_threshold, ModelConfig().score_threshold)  # as analytics.wiring.shown_exact does in the app
    name = name or triton_model_name(adapter.name, precision)  # a .onnx file: its file name without .onnx
    core = build_core(adapter)
    wire = choose_wire(adapter, core, input_kind, output_kind)
    if wire.input == "jpeg" and variant != "python":
        raise ConfigError("--input jpeg needs --variant python (model.py decodes the JPEG on the server); fix: "
                          "--variant python, or --input uint8")
    if wire.input != "float" or wire.output != "raw":
        return _export_served(adapter, core, wire, out_dir, name, variant, precision, max_batch_size, instances,
                              instance_kind, torchscript, plan_api)
    example = adapter.example_input()
    onnx = export_onnx(core, example, cache_dir, adapter.name, precision=precision, dynamic_batch=True)
    dtype = "float16" if onnx.precision == "fp16" else "float32"
    shapes = output_shapes(core, example)
    if adapter.batch_limit:  # a user's file with a fixed batch: the server cannot batch it, dims carry the batch
        log.info("triton: %s was exported for batches of %d, so the server runs it without batching (max_batch_size "
                 "0); export it with dynamic=True to let the server batch requests", adapter.name, adapter.batch_limit)
        max_batch_size, skip = 0, 0
    else:
        skip = 1
    inputs = [TensorSpec(onnx.input_names[0], dtype, tuple(example.shape[skip:]))]
    outputs = [TensorSpec(n, dtype, shape[skip:]) for n, shape in zip(onnx.output_names, shapes)]
    model_dir = _write_model(out_dir, name, variant, precision, max_batch_size, instances, instance_kind, inputs,
                             outputs, wire.parameters(), plan_api, lambda path: shutil.copyfile(onnx.path, path),
                             (core, example, False) if torchscript else None)
    log.info("triton: %s (%s variant, %s, max batch %d, float in, raw out) written to %s", name, variant, precision,
             max_batch_size, model_dir)
    return model_dir


def _export_served(adapter, core, wire, out_dir, name, variant, precision, max_batch_size, instances, instance_kind,
                   torchscript, plan_api) -> str:
    """The served graph (served.py): the frame's normalisation and, for detections, decoding and NMS inside."""
    from .served import describe, export_served_onnx, output_names_of, served_module, tensor_specs

    if adapter.batch_limit:
        raise ConfigError("%s takes batches of exactly %d: its graph cannot be served with --input %s / --output %s; "
                          "fix: --input float --output raw" % (adapter.name, adapter.batch_limit, wire.input,
                                                               wire.output))
    module, example = served_module(adapter, core, wire, precision)
    names = output_names_of(adapter, wire)
    inputs, outputs = tensor_specs(adapter, module, example, names, precision)
    model_dir = _write_model(out_dir, name, variant, precision, max_batch_size, instances, instance_kind, inputs,
                             outputs, wire.parameters(), plan_api,
                             lambda path: export_served_onnx(module, example, path, names),
                             (module, example, True) if torchscript else None)
    log.info("triton: %s (%s variant, %s, max batch %d; %s) written to %s", name, variant, precision, max_batch_size,
             describe(wire, inputs, outputs), model_dir)
    return model_dir


def _write_model(out_dir, name, variant, precision, max_batch_size, instances, instance_kind, inputs, outputs,
                 parameters, plan_api, write_onnx, traced) -> str:
    """The model's folder: config.pbtxt and version 1 (model.onnx or model.plan; model.py and model.pt)."""
    model_dir = os.path.join(out_dir, name)
    version_dir = os.path.join(model_dir, "1")
    try:
        os.makedirs(version_dir, exist_ok=True)
        for stale in ("model.onnx", "model.plan", "model.py", "model.pt"):
            if os.path.exists(os.path.join(version_dir, stale)):
                os.remove(os.path.join(version_dir, stale))
        if variant == "plan":
            with tempfile.TemporaryDirectory(prefix="jetcam-plan-") as work:
                onnx_path = os.path.join(work, "model.onnx")
                write_onnx(onnx_path)
                data = _plan_bytes(plan_api, onnx_path, precision, max_batch_size, name)
            with open(os.path.join(version_dir, "model.plan"), "wb") as f:
                f.write(data)
        else:
            write_onnx(os.path.join(version_dir, "model.onnx"))
        if variant == "python":
            shutil.copyfile(PYTHON_MODEL, os.path.join(version_dir, "model.py"))
            if traced is not None:
                _save_torchscript(traced[0], traced[1], os.path.join(version_dir, "model.pt"), precision == "fp32",
                                  on_gpu=traced[2])
        with open(os.path.join(model_dir, "config.pbtxt"), "w") as f:
            f.write(model_config(name, variant, inputs, outputs, max_batch_size=max_batch_size, instances=instances,
                                 instance_kind=instance_kind, parameters=parameters))
    except OSError as e:
        raise ConfigError("cannot write the Triton repository %s (%s); pass --out with a writable folder"
                          % (out_dir, e.strerror or e)) from e
    return model_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py export-triton", description="Write a Triton Inference Server model "
                                "repository for a model's core; serve it and run the app with --backend triton.")
    p.add_argument("--model", default="nanodet", help="one of: %s; or PATH.onnx (your own model's file)"
                   % ", ".join(MODELS.choices()))
    p.add_argument("--imgsz", help="PATH.onnx with a dynamic input: 640 or 480,640 (h,w)")
    p.add_argument("--decoder", default="auto", choices=["auto", "yolov8", "yolov5", "end2end", "classify"])
    p.add_argument("--labels", help="PATH.onnx: class names file")
    p.add_argument("--weights", help="weights file (also looked up in models/)")
    p.add_argument("--random-weights", action="store_true", help="random weights: timing only")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--variant", default="onnx", choices=VARIANTS,
                   help="onnx: Triton's ONNX Runtime backend (NVIDIA's containers); python: ONNX Runtime inside the "
                   "Python backend (servers without the ONNX Runtime backend, e.g. PyTriton's); plan: a TensorRT "
                   "engine built here for this GPU")
    p.add_argument("--out", default="triton_repository", help="the model repository folder")
    p.add_argument("--name", help="the model's name in the repository (default: the model, plus _fp16 for fp16)")
    p.add_argument("--max-batch-size", type=int, default=8, help="largest batch the server forms from requests")
    p.add_argument("--instances", type=int, default=1, help="model instances the server runs side by side")
    p.add_argument("--instance-kind", default="auto", choices=tuple(INSTANCE_KINDS))
    p.add_argument("--cache-dir", default="models/cache", help="where the ONNX export is cached")
    p.add_argument("--torchscript", action="store_true", help="python variant: also model.pt, run with torch on a "
                   "GPU instance")
    p.add_argument("--input", default="auto", choices=INPUT_KINDS, help="what the client sends: uint8, the frame "
                   "resized to the input (a quarter of float's bytes; the graph normalises it); jpeg, that frame as a "
                   "JPEG (--variant python); float, the preprocessed tensor; auto: uint8 where the model can")
    p.add_argument("--output", default="auto", choices=OUTPUT_KINDS, help="what the server answers: detections, "
                   "the boxes after decoding and NMS in the graph (kilobytes); raw, the core's tensors (what run.py "
                   "bench compares); auto: detections where the model can")
    p.add_argument("--score-threshold", type=float, help="--output detections: the lowest score the server keeps "
                   "(default: the app's model.score_threshold; with tracking, its track_low_thresh or lower)")
    p.add_argument("--iou-threshold", type=float, help="--output detections: NMS IoU (default: the app's)")
    p.add_argument("--max-detections", type=int, help="--output detections: boxes per frame (default: the app's)")
    p.add_argument("--exact-threshold", type=float, help="--output detections: the score from which the static NMS "
                   "proves its result exact (default: the higher of --score-threshold and the app's default)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def export_main(argv: List[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        if args.model not in MODELS:
            raise ConfigError("unknown model '%s'; choose one of: %s" % (args.model, ", ".join(MODELS.choices())))
        nms = {k: v for k, v in (("score_threshold", args.score_threshold), ("iou_threshold", args.iou_threshold),
                                 ("max_detections", args.max_detections)) if v is not None}
        model = ModelConfig(name=args.model, weights=args.weights, random_weights=args.random_weights,
                            imgsz=args.imgsz, decoder=args.decoder, labels=args.labels, **nms)
        path = export_repository(model, args.out, args.precision, args.variant, args.max_batch_size, args.instances,
                                 args.instance_kind, args.cache_dir, args.name, args.torchscript, args.input,
                                 args.output, args.exact_threshold)
    except JetcamError as e:
        if args.debug:
            logging.exception("details")
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code
    print(path)
    return 0
