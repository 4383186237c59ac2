"""Write a longer benchmark video by repeating a clip: python bench/loop_video.py IN OUT --times 4."""

import argparse

import cv2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--times", type=int, default=4)
    args = p.parse_args()
    writer = None
    frames = 0
    for _ in range(args.times):
        cap = cv2.VideoCapture(args.src)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(args.dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (image.shape[1], image.shape[0]))
            writer.write(image)
            frames += 1
        cap.release()
    if writer is None:
        raise SystemExit("could not read %s" % args.src)
    writer.release()
    print("%s: %d frames" % (args.dst, frames))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
