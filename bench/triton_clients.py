"""N app processes (cameras) against one Triton server, against the same N processes each running the core locally.

Each client is the whole app (`run.py --backend triton`, headless, drawing on, recording off) on its own copy of
the source; the local side runs the same processes with `--backend onnxruntime`. Per client: the sustained fps,
the end-to-end latency and the infer time (the round trip for triton) from its summary.json; aggregate: the sum of
the clients' fps (they run side by side). Without --url a local server (PyTriton's, from .venv-triton) serves the
`python` variant of export-triton's repository.

    python bench/triton_clients.py --model nanodet --clients 1,2,4 --frames 60 --json out.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from common import machine, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_clients(n: int, backend_args: List[str], args: argparse.Namespace, out_dir: str) -> Dict[str, Any]:
    """Start n app processes at once; their summaries and the aggregate."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    if args.clients_off_gpu and "--backend triton" in " ".join(backend_args):
        env["CUDA_VISIBLE_DEVICES"] = ""  # the clients' own GPU work would share the server's GPU, time-sliced
    procs = []
    for k in range(n):
        out = os.path.join(out_dir, "client%d" % k)
        cmd = [sys.executable, os.path.join(ROOT, "run.py"), "--source", args.source, "--model", args.model,
               "--max-frames", str(args.frames), "--headless", "--precision", args.precision, "--out", out] + backend_args
        if args.random_weights:
            cmd.append("--random-weights")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        procs.append((out, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            universal_newlines=True)))
    clients = []
    for out, proc in procs:
        _, err = proc.communicate(timeout=args.timeout_s)
        if proc.returncode != 0:
            raise SystemExit("a client failed (exit %d): %s" % (proc.returncode, err.strip().splitlines()[-1:]))
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        clients.append({"fps": round(s["fps"], 2), "processed": s["frames"]["processed"],
                        "dropped": s["frames"]["dropped"], "latency_p50_ms": round(s["stages_ms"]["latency_ms"]["p50"], 1),
                        "latency_p99_ms": round(s["stages_ms"]["latency_ms"]["p99"], 1), "infer_p50_ms": round(s["stages_ms"]["infer_ms"]["p50"], 1)})
    return {"clients": n, "aggregate_fps": round(sum(c["fps"] for c in clients), 2),
            "mean_latency_p50_ms": round(sum(c["latency_p50_ms"] for c in clients) / n, 1), "per_client": clients}


def start_server(args: argparse.Namespace, work: str):
    from jetcam_app.config import ModelConfig
    from jetcam_app.triton.export import export_repository
    from jetcam_app.triton.local_server import LocalTritonServer

    repo = args.repository
    if not repo:
        repo = os.path.join(work, "repository")
        export_repository(ModelConfig(name=args.model, random_weights=args.random_weights), repo, precision=args.precision,
                          variant="python", max_batch_size=max(8, max(args.clients)),
                          cache_dir=os.path.join(ROOT, "models", "cache"))
    return LocalTritonServer(repo).start()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="nanodet")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--source", default=os.path.join(ROOT, "media", "bikes.mp4"))
    p.add_argument("--clients", default="1,2,4", type=lambda t: [int(v) for v in t.split(",")])
    p.add_argument("--frames", type=int, default=60, help="frames each client processes")
    p.add_argument("--url", help="an existing server (grpc://host:8001); default: start a local one")
    p.add_argument("--repository", help="a repository for the local server (default: export the python variant)")
    p.add_argument("--threads", type=int, default=0, help="the local side's ONNX Runtime threads (0 = one per core)")
    p.add_argument("--local-backend", default="onnxruntime", help="the local side's backend (cuda on a GPU machine)")
    p.add_argument("--precision", default="fp32", help="both sides' precision")
    p.add_argument("--no-local", action="store_true", help="skip the local (onnxruntime) side")
    p.add_argument("--clients-off-gpu", action="store_true",
                   help="triton clients see no GPU (as camera machines apart from a GPU server would not share it)")
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="triton-clients-")
    server = None if args.url else start_server(args, work)
    url = args.url or server.grpc_url
    figures = {"machine": machine(), "model": args.model, "frames_per_client": args.frames, "source": args.source,
               "server": url if args.url else "local PyTriton tritonserver, python variant", "rows": []}
    try:
        for n in args.clients:
            modes = [("triton", ["--backend", "triton", "--triton-url", url])]
            if not args.no_local:
                modes.append(("local " + args.local_backend, ["--backend", args.local_backend]))
            for mode, backend_args in modes:
                start = time.perf_counter()
                row = run_clients(n, backend_args, args, os.path.join(work, "%s_%d" % (mode.replace(" ", "_"), n)))
                row.update(mode=mode, wall_s=round(time.perf_counter() - start, 1))
                figures["rows"].append(row)
                print("%-18s clients %d: aggregate %.1f fps, per-client latency p50 %.1f ms" % (
                    mode, n, row["aggregate_fps"], row["mean_latency_p50_ms"]), flush=True)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(figures, indent=2))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
