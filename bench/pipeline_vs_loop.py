"""Benchmark: the app's pipeline against the lab's sequential loop on the same video and model, in one run.

Prints decode-only FPS, engine-only FPS, the sequential loop's FPS and the app's end-to-end FPS (headless,
drawing on, recording off), with the ratios and the machine. Not a test: speed is measured, never asserted.

    python bench/pipeline_vs_loop.py --model ssd300_vgg16 --random-weights --frames 100
    python bench/pipeline_vs_loop.py --model nanodet --backend cuda --precision fp16 --cuda-graph
"""

import argparse
import tempfile
import time

import cv2
import torch

from common import add_app_arguments, app_overrides, machine, write_json  # also puts the repository on sys.path

from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.inference.engines.base import capabilities_of, create_engine  # noqa: E402
from jetcam_app.inference.engines.torch_engine import as_tuple  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402

TORCHVISION_DETECTORS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large")


def decode_only_fps(path: str, frames: int) -> float:
    cap = cv2.VideoCapture(path)
    n, start = 0, time.perf_counter()
    while n < frames:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n / (time.perf_counter() - start)


def engine_only_fps(config, iterations: int) -> float:
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    engine.load(build_core(adapter), adapter.example_input(), config.model.name)
    if config.pipeline.cuda_graph and engine.capabilities.fuses_stages:
        engine.capture_graph()  # the forward alone as a graph: the engine's ceiling without the stages around it
    batch = adapter.example_input(engine.device, engine.input_dtype)
    for _ in range(5):
        engine.infer(batch)
    engine.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        engine.infer(batch)
    engine.synchronize()
    fps = iterations / (time.perf_counter() - start)
    engine.close()
    return fps


def stages_only_fps(config, path: str, frames: int) -> float:
    """preprocess -> infer -> postprocess in one thread on frames decoded beforehand: the main thread's ceiling."""
    from jetcam_app.inference.fused_stages import make_stages
    from jetcam_app.types import Frame

    cap = cv2.VideoCapture(path)
    images = []
    while len(images) < min(frames, 200):
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    engine.load(build_core(adapter), adapter.example_input(), config.model.name)
    stages = make_stages(adapter, engine, config.pipeline.cuda_graph)
    batch = [Frame(image, i, 0.0, time.perf_counter()) for i, image in enumerate(images)]
    for frame in batch[:5]:
        stages.finish(stages.submit([frame]))
    start = time.perf_counter()
    for frame in batch:
        stages.finish(stages.submit([frame]))
    fps = len(batch) / (time.perf_counter() - start)
    engine.close()
    return fps


def lab_loop_fps(config, path: str, frames: int) -> float:
    """The lab's loop: read -> RGB -> ToTensor() on the full frame -> torchvision model -> scores > 0.5 -> draw."""
    from torchvision.transforms import functional as TF

    on_gpu = capabilities_of(config.engine.backend).device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    if config.model.name in TORCHVISION_DETECTORS:
        import torchvision

        model = getattr(torchvision.models.detection, config.model.name)(weights=None, weights_backbone=None)
        model.eval().to(device)
        run = lambda x: model([x])[0]  # noqa: E731
    else:
        adapter = create_adapter(config.model)
        network = build_core(adapter).eval().to(device)

        def run(x):
            image = (x.permute(1, 2, 0).flip(-1) * 255).byte().cpu().numpy()
            result = adapter.postprocess(as_tuple(network(adapter.preprocess(image, device, torch.float32))),
                                        image.shape[:2])
            if hasattr(result, "boxes"):
                return {"boxes": torch.as_tensor(result.boxes), "scores": torch.as_tensor(result.scores)}
            return {"boxes": torch.zeros((0, 4)), "scores": torch.zeros((0,))}
    cap = cv2.VideoCapture(path)
    n, start = 0, None
    with torch.no_grad():
        while n < frames + 3:
            ok, frame = cap.read()
            if not ok:
                cap.release()
                cap = cv2.VideoCapture(path)
                continue
            if n == 3:
                start = time.perf_counter()  # the first frames warm up
            x = TF.to_tensor(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).to(device)
            out = run(x)
            keep = out["scores"] > 0.5
            for box in out["boxes"][keep].cpu().numpy().astype(int):
                cv2.rectangle(frame, (box[0], box[1]), (box[2], box[3]), (0, 255, 0), 2)
            n += 1
    cap.release()
    return frames / (time.perf_counter() - start)


def app_fps(config_overrides: dict, frames: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        overrides = dict(config_overrides)
        overrides.update({"output.out_dir": out, "output.headless": True, "pipeline.max_frames": frames})
        summary = Pipeline(load_config(None, overrides)).run()
    return summary


def app_fps_without_pinned_decode(config_overrides: dict, frames: int) -> float:
    """The app with frames copied into the graph's own page-locked buffer instead of decoded into the pool."""
    import jetcam_app.inference.fused_stages as graphed

    pool_for = graphed.pool_for
    graphed.pool_for = lambda device, limit_bytes=0: None
    try:
        return app_fps(config_overrides, frames)["fps"]
    finally:
        graphed.pool_for = pool_for


def app_fps_with_depth(config_overrides: dict, frames: int, depth: int) -> float:
    """The app with `depth` frames in flight (pipeline.in_flight)."""
    return app_fps(dict(config_overrides, **{"pipeline.in_flight": depth}), frames)["fps"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_app_arguments(p, model="ssdlite320_mobilenet_v3_large")
    p.add_argument("--source", default=None, help="a video (default: the sample video)")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--loop-frames", type=int, default=0,
                   help="frames for the sequential loop (default: --frames, at most 300: the loop is slow)")
    p.add_argument("--ab-pinned-decode", action="store_true",
                   help="also run the app with frames copied instead of decoded into page-locked buffers, then "
                        "with them again (side by side in this run)")
    p.add_argument("--ab-depth", action="store_true",
                   help="also run the app with 2 frames in flight, then the default again (4 through the fused graph "
                        "on a desktop GPU), then 2 again")
    p.add_argument("--main-thread-split", action="store_true",
                   help="also run the app once more with its inference thread's time split per frame (waiting for "
                        "frames, submit, finish, hand-off to the emitter, rest): which side holds it back")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    from jetcam_app.assets import sample_video_path

    source = args.source or sample_video_path()
    overrides = app_overrides(args, source)
    config = load_config(None, overrides)
    lab_config = load_config(None, dict(overrides, **{"engine.precision": "fp32", "pipeline.cuda_graph": False}))
    print("machine: %s" % machine())
    print("model %s, backend %s %s%s, source %s, %d frames" % (args.model, args.backend, args.precision,
                                                             " + CUDA graph" if args.cuda_graph else "", source,
                                                             args.frames))
    figures = {"machine": machine(), "model": args.model, "backend": args.backend, "precision": args.precision,
               "cuda_graph": args.cuda_graph, "frames": args.frames}
    figures["decode_fps"] = decode_only_fps(source, args.frames)
    figures["engine_fps"] = engine_only_fps(config, max(20, args.frames))
    figures["stages_only_fps"] = stages_only_fps(config, source, args.frames)
    figures["lab_loop_frames"] = args.loop_frames or min(args.frames, 300)
    figures["lab_loop_fps"] = lab_loop_fps(lab_config, source, figures["lab_loop_frames"])
    summary = app_fps(overrides, args.frames)
    figures["app_fps"] = summary["fps"]
    figures["app_vs_loop"] = figures["app_fps"] / figures["lab_loop_fps"]
    figures["app_vs_bound"] = figures["app_fps"] / min(figures["decode_fps"], figures["engine_fps"])
    figures["app_stage_p50_ms"] = {k: v["p50"] for k, v in summary["stages_ms"].items()}
    figures["graph_fallbacks"] = summary.get("graph_fallbacks")
    if args.ab_pinned_decode:
        figures["app_fps_copied_frames"] = app_fps_without_pinned_decode(overrides, args.frames)
        figures["app_fps_again"] = app_fps(overrides, args.frames)["fps"]
        print("  app fps: decoded into page-locked buffers %.1f, copied %.1f, decoded into them again %.1f"
              % (figures["app_fps"], figures["app_fps_copied_frames"], figures["app_fps_again"]))
    if args.ab_depth:
        figures["app_fps_depth"] = {"default": figures["app_fps"]}
        figures["app_fps_depth"]["2"] = app_fps_with_depth(overrides, args.frames, 2)
        figures["app_fps_depth"]["default again"] = app_fps(overrides, args.frames)["fps"]
        figures["app_fps_depth"]["2 again"] = app_fps_with_depth(overrides, args.frames, 2)
        print("  app fps by frames in flight: " + ", ".join("%s: %.1f" % kv for kv in figures["app_fps_depth"].items()))
    if args.main_thread_split:
        from main_thread_split import main_thread_split

        split = main_thread_split(lambda: app_fps(overrides, args.frames))
        figures["main_thread_us_per_frame"] = split
        print("  inference thread, us per frame: " + ", ".join("%s %.0f" % kv for kv in split.items()))
    print("  fused-graph fallbacks (frames sent to the dynamic postprocessing): %s" % figures["graph_fallbacks"])
    print("  app stage p50 ms: " + ", ".join("%s %.2f" % (k, v or 0) for k, v in figures["app_stage_p50_ms"].items()))
    for key in ("decode_fps", "engine_fps", "stages_only_fps", "lab_loop_fps", "app_fps"):
        print("  %-14s %8.1f" % (key, figures[key]))
    print("  app / lab loop        %.2fx" % figures["app_vs_loop"])
    print("  app / min(decode, engine) %.0f%%" % (100 * figures["app_vs_bound"]))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
