"""Write the GPU-decoding benchmark's video: a clip looped to N frames, H.264 (libx264 through PyAV) at a fixed
rate, the codec cameras send (OpenCV's own writer gives MPEG-4 part 2). Run where PyAV is (the GPU machine has none):

    python bench/h264_clip.py media/bigbuckbunny.mp4 media/bbb720p30.mp4 --frames 5400 --fps 30
"""

import argparse
from fractions import Fraction


def main() -> int:
    import av

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--frames", type=int, default=5400)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--crf", default="32", help="x264's quality (higher: smaller file)")
    args = p.parse_args()
    out = av.open(args.dst, "w")
    stream = out.add_stream("libx264", rate=args.fps)
    stream.codec_context.time_base = Fraction(1, args.fps)
    stream.options = {"crf": args.crf, "preset": "veryfast", "g": str(2 * args.fps)}
    written = 0
    while written < args.frames:
        with av.open(args.src) as inp:
            for frame in inp.decode(video=0):
                if written == 0:
                    stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                picture = frame.reformat(format="yuv420p")
                picture.pts, picture.time_base = written, Fraction(1, args.fps)
                for packet in stream.encode(picture):
                    out.mux(packet)
                written += 1
                if written >= args.frames:
                    break
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    print("%s: %d frames at %d fps" % (args.dst, written, args.fps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
