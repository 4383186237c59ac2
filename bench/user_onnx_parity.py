"""How close a user's ONNX file comes to the built-in model it was exported from: NanoDet-g's core, with its
normalisation and GFL decoding inside, exported as a YOLOv8-style file (RGB 0..1 in, [1, 84, N] out, COCO names in its
metadata), then run through `--model FILE` (the onnx adapter) against the built-in `nanodet` (PyTorch, CPU) on
scikit-image's photos, centre-cropped square so the letterbox pads nothing (114 grey against NanoDet's 0 black).

    .venv/bin/python bench/user_onnx_parity.py [--backend onnxruntime] [--threshold 0.3]
"""

import argparse
import inspect
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.config import EngineConfig, load_config  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.inference.adapters.labels import COCO_80  # noqa: E402
from jetcam_app.inference.adapters.nanodet import MEAN_BGR, STD_BGR  # noqa: E402
from jetcam_app.inference.engines.base import create_engine  # noqa: E402


class NanoDetAsYolo(torch.nn.Module):
    def __init__(self, adapter):
        super().__init__()
        self.adapter, self.core = adapter, build_core(adapter)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD_BGR).view(1, 3, 1, 1))

    def forward(self, x):
        boxes, scores = self.adapter.decode_batch(self.core((x.flip(1) * 255 - self.mean) / self.std))
        centre, size = (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
        return torch.cat((centre, size, scores), -1).transpose(1, 2)


def export(nanodet, path: str) -> None:
    import onnx

    kwargs = dict(opset_version=17, input_names=["images"], output_names=["output0"],
                  dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}})
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(NanoDetAsYolo(nanodet).eval(), (torch.zeros(1, 3, 416, 416),), path, **kwargs)
    model = onnx.load(path)
    for key, value in (("names", str(dict(enumerate(COCO_80)))), ("task", "detect"), ("imgsz", "[416, 416]")):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)


def photos():
    import skimage.data as d

    for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle"):
        rgb = d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)()
        side = min(rgb.shape[:2])
        top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        yield name, np.ascontiguousarray(rgb[top:top + side, left:left + side, :3][..., ::-1])


def timed(fn, repeats=5):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - start) / repeats * 1000.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threshold", type=float, default=0.3)
    args = p.parse_args()
    base = {"model.score_threshold": args.threshold}
    nanodet = create_adapter(load_config(overrides=dict(base, **{"model.name": "nanodet"})).model)
    core = build_core(nanodet)
    path = os.path.join(tempfile.mkdtemp(), "nanodet_yolo.onnx")
    export(nanodet, path)
    user = create_adapter(load_config(overrides=dict(base, **{"model.name": path})).model)
    engine = create_engine(load_config(overrides={"engine.backend": args.backend}).engine, onnx_file=True)
    engine.load(build_core(user), user.example_input(), user.name)
    print("| photo | boxes (built-in / file) | labels equal | max abs box diff (px) | max abs score diff | "
          "built-in ms | file on %s ms |" % args.backend)
    print("|---|---|---|---|---|---|---|")
    for name, image in photos():
        cpu = torch.device("cpu")
        with torch.no_grad():
            want, ms_a = timed(lambda: nanodet.postprocess(core(nanodet.preprocess(image, cpu, torch.float32)),
                                                           image.shape[:2]))
        got, ms_b = timed(lambda: user.postprocess(engine.infer(user.preprocess(image, cpu, torch.float32)),
                                                   image.shape[:2]))
        same = len(got) == len(want) and list(got.labels) == list(want.labels)
        box = float(np.abs(got.boxes - want.boxes).max()) if same and len(want) else float("nan")
        score = float(np.abs(got.scores - want.scores).max()) if same and len(want) else float("nan")
        print("| %s %dx%d | %d / %d | %s | %.2g | %.2g | %.1f | %.1f |" % (name, image.shape[1], image.shape[0], len(want),
                                                                     len(got), same, box, score, ms_a, ms_b))
    print("\nfile: %s (%s)" % (os.path.basename(path), user.describe_weights()))


if __name__ == "__main__":
    main()
