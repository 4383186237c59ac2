"""The TorchScript core export-triton writes (model.pt) against the app's own core on one input, on CPU and CUDA,
with TorchScript's optimising executor on and off: where a Triton python-variant row differs from the reference.

    python bench/triton_core_check.py --repository /tmp/triton-repo --model ssd300_vgg16 --random-weights
"""

import argparse
import glob
import os

import torch
from common import machine  # also puts the repository on sys.path

from jetcam_app.config import ModelConfig  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402


def as_tuple(out):
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--random-weights", action="store_true")
    args = p.parse_args()
    print("machine:", machine())
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    adapter = create_adapter(ModelConfig(name=args.model, random_weights=args.random_weights))
    core = build_core(adapter).eval()
    x = torch.rand(tuple(adapter.example_input().shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = as_tuple(core(x))
    own = os.path.join(args.repository, args.model, "1", "model.pt")  # the core's, beside the served variants
    path = own if os.path.isfile(own) else glob.glob(os.path.join(args.repository, "*", "1", "model.pt"))[0]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        with torch.no_grad():
            eager = as_tuple(core.to(device)(x.to(device)))
        print("%-4s eager core: max abs %.3g" % (device, max(float((r - e.cpu()).abs().max())
                                                         for r, e in zip(reference, eager))))
        module = torch.jit.load(path, map_location=device).eval()
        for optimised in (True, False):
            with torch.no_grad(), torch.jit.optimized_execution(optimised):
                for _ in range(3):  # the profiling executor optimises after its first runs
                    out = as_tuple(module(x.to(device)))
            print("%-4s model.pt, optimising executor %s: max abs %.3g" % (
                device, "on" if optimised else "off",
                max(float((r - o.cpu()).abs().max()) for r, o in zip(reference, out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
