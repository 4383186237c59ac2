"""Render the overlay on the sample video's busiest frame at several sizes, for docs/screenshots/:

    python scripts/overlay_screenshots.py runs/demo/predictions.jsonl media/bikes.mp4 docs/screenshots

The predictions come from a real run (`run.py --source media/bikes.mp4 --out runs/demo`); the frame and its boxes
are scaled to 320x240, 640x272, 1280x720 and 3840x2160 (the 4K PNG is saved at half size to stay small).
"""

import argparse
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.config import OverlayConfig  # noqa: E402
from jetcam_app.output.overlay import HudInfo, Overlay  # noqa: E402
from jetcam_app.types import Detections  # noqa: E402

SIZES = ((320, 240), (640, 272), (1280, 720), (3840, 2160))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("predictions")
    p.add_argument("video")
    p.add_argument("out_dir")
    args = p.parse_args()
    with open(args.predictions) as f:
        records = [json.loads(line) for line in f]
    busiest = max(range(len(records)), key=lambda i: len(records[i]["labels"]))
    cap = cv2.VideoCapture(args.video)
    cap.set(cv2.CAP_PROP_POS_FRAMES, busiest)
    ok, frame = cap.read()
    if not ok:
        raise SystemExit("cannot read frame %d of %s" % (busiest, args.video))
    record = records[busiest]
    names = dict(zip(record["labels"], record["names"]))
    class_names = [names.get(i, "") for i in range(max(names, default=0) + 1)]
    hud = HudInfo(fps=24.7, stage_ms={"pre": 1.4, "infer": 31.2, "post": 1.9, "draw": 0.6}, rss_mb=845.0,
                  ram_used_mb=3100.0, ram_total_mb=7800.0, gpu_mb=None, model="nanodet", backend="cpu",
                  precision="fp32", realtime_ok=True, budget_ms=40.0, p95_ms=36.0, dropped=0)
    os.makedirs(args.out_dir, exist_ok=True)
    for w, h in SIZES:
        sx, sy = w / frame.shape[1], h / frame.shape[0]
        image = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        boxes = np.array(record["boxes"], np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        det = Detections(boxes, np.array(record["scores"], np.float32), np.array(record["labels"], np.int64),
                         class_names)
        overlay = Overlay(OverlayConfig())
        overlay.annotate(image, det, hud)
        if w > 1920:
            image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        path = os.path.join(args.out_dir, "overlay_%dx%d.png" % (w, h))
        cv2.imwrite(path, image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print("%s: frame %d, %d boxes, HUD at %s" % (path, busiest, len(det), overlay.last_hud_rect))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
