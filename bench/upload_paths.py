"""How a 720p frame best reaches the GPU: pinned staging vs pageable copy vs CPU resize first (ms per frame)."""

import os
import sys
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.inference.adapters.preprocess import prepare, upload  # noqa: E402

MEAN, STD = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)


def timed(fn, n=200):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1000


def main() -> int:
    dev = torch.device("cuda")
    frames = [np.random.randint(0, 255, (720, 1280, 3), np.uint8) for _ in range(4)]
    i = [0]

    def frame():
        i[0] += 1
        return frames[i[0] % 4]

    print("machine: %s" % torch.cuda.get_device_name(0))
    print("prepare (pinned staging, GPU letterbox) %.3f ms" % timed(
        lambda: prepare(frame(), (416, 416), dev, torch.float16, MEAN, STD, rgb=False, letterbox=True)))
    print("upload only, pinned staging             %.3f ms" % timed(lambda: upload(frame(), dev)))
    print("upload only, pageable .to(cuda)         %.3f ms" % timed(lambda: torch.from_numpy(frame()).to(dev)))
    pinned = torch.empty((720, 1280, 3), dtype=torch.uint8).pin_memory()
    pinned_view = pinned.numpy()
    print("np.copyto into pinned                   %.3f ms" % timed(lambda: np.copyto(pinned_view, frame())))
    print("torch copy_ into pinned                 %.3f ms" % timed(lambda: pinned.copy_(torch.from_numpy(frame()))))
    print("cv2.resize on CPU to 416x234            %.3f ms" % timed(lambda: cv2.resize(frame(), (416, 234))))
    print("cv2 resize + pageable upload            %.3f ms" % timed(
        lambda: torch.from_numpy(cv2.resize(frame(), (416, 234))).to(dev)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
