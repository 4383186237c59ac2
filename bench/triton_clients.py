"""N app processes (cameras) against one Triton server, per served wire format, against the server alone and against
the same N processes each running the model locally.

Each client is the whole app (`run.py --backend triton`, headless, drawing on, recording off) on its own copy of
the source; the local side runs the same processes with `--backend onnxruntime` (`--local-backend cuda` on a GPU
machine). Per row: the clients' aggregate fps (the sum: they run side by side), the tensor bytes a frame each way
(the clients' summary.json, engine_wire: 0 through shared memory), and the round trip split into network (with
(de)serialisation), server queue and server compute from the server's statistics over the row, with its mean batch.
The server alone is bench/triton_raw.py's client keeping N requests of one frame in flight (what the wire and the
server allow, no app). Variants are export-triton's --input / --output pairs, each served as MODEL_<variant>:

    float-raw          the preprocessed tensor in, the core's outputs out (the comparison in run.py bench)
    uint8-raw          the resized uint8 frame in (normalised in the graph), the core's outputs out
    uint8-detections   the frame in, decoding and NMS in the graph, the final boxes out (export-triton's default)
    jpeg-detections    the frame as a JPEG in (decoded by model.py: python variant, OpenCV or Pillow and, with
                       PyTriton's server, NumPy < 2 in the server's Python; not in the default list)

Without --url a local server (PyTriton's, from .venv-triton) serves the `python` variant of each; with --url,
serve the names this prints (`--print-exports`). Measured, never asserted.

    python bench/triton_clients.py --model nanodet --clients 1,8 --frames 60 --variants float-raw,uint8-detections \
        --shm none,system --json out.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from common import machine, write_json  # also puts the repository on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"float-raw": ("float", "raw"), "uint8-raw": ("uint8", "raw"), "uint8-detections": ("uint8", "detections"),
            "jpeg-detections": ("jpeg", "detections")}


def served_name(model: str, variant: str) -> str:
    return "%s_%s" % (model, variant.replace("-", "_"))


def export_args(args: argparse.Namespace, variant: str, out: Optional[str] = None) -> List[str]:
    kind_in, kind_out = VARIANTS[variant]
    cmd = ["export-triton", "--model", args.model, "--variant", args.server_variant, "--precision", args.precision,
           "--max-batch-size", str(args.max_batch_size), "--input", kind_in, "--output", kind_out,
           "--name", served_name(args.model, variant), "--out", out or args.export_out]
    if args.random_weights:
        cmd.append("--random-weights")
    return cmd + args.export_args


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
        infer = s["stages_ms"]["infer_ms"]
        client = {"fps": round(s["fps"], 2), "processed": s["frames"]["processed"], "dropped": s["frames"]["dropped"],
                  "latency_p50_ms": round(s["stages_ms"]["latency_ms"]["p50"], 1),
                  "latency_p99_ms": round(s["stages_ms"]["latency_ms"]["p99"], 1),
                  "infer_p50_ms": round(infer["p50"], 1), "infer_mean_ms": infer.get("mean"),
                  "infer_count": infer.get("count", 0)}
        wire = s.get("engine_wire")
        if wire:
            client.update(sent_bytes_per_frame=wire["sent_bytes_per_frame"],
                          received_bytes_per_frame=wire["received_bytes_per_frame"],
                          shared_memory=wire.get("shared_memory"), shared_memory_note=wire.get("shared_memory_note"))
        clients.append(client)
    row = {"clients": n, "aggregate_fps": round(sum(c["fps"] for c in clients), 2),
           "mean_latency_p50_ms": round(sum(c["latency_p50_ms"] for c in clients) / n, 1), "per_client": clients}
    if "sent_bytes_per_frame" in clients[0]:
        row["sent_kb_per_frame"] = round(sum(c["sent_bytes_per_frame"] for c in clients) / n / 1024.0, 2)
        row["received_kb_per_frame"] = round(sum(c["received_bytes_per_frame"] for c in clients) / n / 1024.0, 2)
        row["shared_memory"] = clients[0]["shared_memory"]
    return row


def round_trips(row: Dict[str, Any]) -> List[float]:
    """Every client's round trips as its mean repeated per request (summary.json keeps the distribution, not the list)."""
    out = []  # type: List[float]
    for c in row["per_client"]:
        if c.get("infer_mean_ms") is not None:
            out.extend([c["infer_mean_ms"]] * int(c["infer_count"]))
    return out


class ServerStats:
    """The served model's statistics before and after a row, as statistics.round_trip_split reads them."""

    def __init__(self, url: str):
        import tritonclient.grpc as module

        self.client = module.InferenceServerClient(url.split("://", 1)[-1])

    def counters(self, model: str) -> Dict[str, int]:
        from jetcam_app.triton.statistics import counters

        return counters(self.client.get_inference_statistics(model, as_json=True), model)


def server_alone(url: str, model: str, concurrency: int, seconds: float) -> Dict[str, Any]:
    """bench/triton_raw.py's measurement: one client keeping `concurrency` requests of one frame in flight."""
    import tritonclient.grpc as module

    from triton_raw import measure

    client = module.InferenceServerClient(url.split("://", 1)[-1])
    try:
        return measure(client, module, model, concurrency, seconds, 1)
    finally:
        client.close()


def start_server(args: argparse.Namespace, work: str):
    from jetcam_app.cli import main as app_main
    from jetcam_app.triton.local_server import LocalTritonServer

    repo = args.repository
    if not repo:
        repo = os.path.join(work, "repository")
        for variant in args.variants:
            if app_main(export_args(args, variant, repo) + ["--cache-dir", os.path.join(ROOT, "models", "cache")]):
                raise SystemExit("export-triton failed for %s" % variant)
    return LocalTritonServer(repo).start()


def table(figures: Dict[str, Any]) -> str:
    lines = ["| mode | clients | aggregate fps | sent KB/frame | received KB/frame | round trip ms = network + queue "
             "+ compute | mean batch |", "|---|---|---|---|---|---|---|"]
    for r in figures["rows"]:
        split = r.get("round_trip_split") or {}
        rt = ("%.1f = %.1f + %.1f + %.1f" % (split["round_trip_ms"], split["network_ms"], split["queue_ms"],
                                            split["compute_ms"])) if split else ""
        lines.append("| %s | %d | %.1f | %s | %s | %s | %s |" % (
            r["mode"], r["clients"], r["aggregate_fps"], r.get("sent_kb_per_frame", ""),
            r.get("received_kb_per_frame", ""), rt, split.get("mean_batch", "")))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="nanodet")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--source", default=os.path.join(ROOT, "media", "bikes.mp4"))
    p.add_argument("--clients", default="1,8", type=lambda t: [int(v) for v in t.split(",")])
    p.add_argument("--frames", type=int, default=60, help="frames each client processes")
    p.add_argument("--variants", default="float-raw,uint8-raw,uint8-detections",
                   type=lambda t: [v for v in t.split(",") if v], help="of: %s" % ", ".join(VARIANTS))
    p.add_argument("--shm", default="none", type=lambda t: t.split(","),
                   help="client modes: none, system, cuda (comma-separated; shared memory needs the server here)")
    p.add_argument("--url", help="an existing server (grpc://host:8001) serving MODEL_<variant>; default: start one")
    p.add_argument("--repository", help="a repository for the local server (default: export each variant)")
    p.add_argument("--server-variant", default="python", help="export-triton --variant for the local server")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--export-args", default="", type=lambda t: t.split(), help="more export-triton options (quoted)")
    p.add_argument("--print-exports", action="store_true", help="print the export-triton commands for --url and exit")
    p.add_argument("--export-out", default="repo", help="--print-exports: the repository they write")
    p.add_argument("--alone-seconds", type=float, default=5.0, help="the server alone: seconds per row (0 = skip)")
    p.add_argument("--threads", type=int, default=0, help="the local side's ONNX Runtime threads (0 = one per core)")
    p.add_argument("--local-backend", default="onnxruntime", help="the local side's backend (cuda on a GPU machine)")
    p.add_argument("--precision", default="fp32", help="both sides' precision")
    p.add_argument("--no-local", action="store_true", help="skip the local side")
    p.add_argument("--clients-off-gpu", action="store_true",
                   help="triton clients see no GPU (as camera machines apart from a GPU server would not share it)")
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit("unknown variant(s) %s; choose from %s" % (", ".join(unknown), ", ".join(VARIANTS)))
    if args.print_exports:
        for variant in args.variants:
            print("python run.py " + " ".join(export_args(args, variant)))
        return 0
    work = tempfile.mkdtemp(prefix="triton-clients-")
    server = None if args.url else start_server(args, work)
    url = args.url or server.grpc_url
    stats = ServerStats(url)
    figures = {"machine": machine(), "model": args.model, "frames_per_client": args.frames, "source": args.source,
               "server": url if args.url else "local PyTriton tritonserver, %s variant" % args.server_variant,
               "rows": []}
    try:
        for n in args.clients:
            for variant in args.variants:
                name = served_name(args.model, variant)
                if args.alone_seconds > 0 and VARIANTS[variant][0] != "jpeg":  # triton_raw sends random tensors
                    alone = server_alone(url, name, n, args.alone_seconds)
                    alone.update(mode="server alone, %s" % variant, clients=n, aggregate_fps=alone["frames_per_s"])
                    figures["rows"].append(alone)
                    print("%-36s in flight %d: %.1f frames/s" % (alone["mode"], n, alone["frames_per_s"]), flush=True)
                for shm in args.shm:
                    if shm != "none" and VARIANTS[variant][0] == "jpeg":
                        continue  # JPEG frames go over the network
                    mode = "triton %s%s" % (variant, "" if shm == "none" else ", %s shm" % shm)
                    backend = ["--backend", "triton", "--triton-url", url, "--triton-model", name, "--triton-shm", shm]
                    before = stats.counters(name)
                    start = time.perf_counter()
                    row = run_clients(n, backend, args, os.path.join(work, "%s_%s_%d" % (variant, shm, n)))
                    from jetcam_app.triton.statistics import round_trip_split

                    row.update(mode=mode, wall_s=round(time.perf_counter() - start, 1),
                               round_trip_split=round_trip_split(before, stats.counters(name), round_trips(row)))
                    figures["rows"].append(row)
                    print("%-36s clients %d: aggregate %.1f fps, %s KB out / %s KB back a frame, split %s" % (
                        mode, n, row["aggregate_fps"], row.get("sent_kb_per_frame"), row.get("received_kb_per_frame"),
                        row["round_trip_split"]), flush=True)
            if not args.no_local:
                mode = "local " + args.local_backend
                start = time.perf_counter()
                row = run_clients(n, ["--backend", args.local_backend], args, os.path.join(work, "local_%d" % n))
                row.update(mode=mode, wall_s=round(time.perf_counter() - start, 1))
                figures["rows"].append(row)
                print("%-36s clients %d: aggregate %.1f fps" % (mode, n, row["aggregate_fps"]), flush=True)
    finally:
        stats.client.close()
        if server is not None:
            server.stop()
    print(json.dumps(figures, indent=2))
    print(table(figures))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
