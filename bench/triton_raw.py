"""The server alone: K requests kept in flight by one tritonclient for S seconds, no app around it (what NVIDIA's
perf_analyzer measures), so the app's figures can be read against what the server and the wire allow.

    python bench/triton_raw.py --url grpc://127.0.0.1:8001 --model ssd300_vgg16 --concurrency 1,4,8 --json out.json

Per concurrency: answers per second and the round trip's p50 / p99 as the client sees it. The input is random data
of the model's shape and type, read from the server's metadata. Measured, never asserted.
"""

import argparse
import json
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
from common import machine, write_json  # also puts the repository on sys.path

TYPES = {"FP32": np.float32, "FP16": np.float16, "UINT8": np.uint8, "INT64": np.int64}


def measure(client, module, model: str, concurrency: int, seconds: float, batch: int) -> Dict[str, Any]:
    meta = client.get_model_metadata(model, as_json=True)
    spec = meta["inputs"][0]
    shape = [batch] + [int(d) for d in spec["shape"][1:]]
    data = np.random.default_rng(0).random(shape).astype(TYPES[spec["datatype"]])
    tensor = module.InferInput(spec["name"], shape, spec["datatype"])
    tensor.set_data_from_numpy(data)
    lock, done = threading.Condition(), []
    state = {"in_flight": 0, "errors": 0}

    def answered(sent, result, error):
        with lock:
            state["in_flight"] -= 1
            if error is None:
                result.as_numpy(meta["outputs"][0]["name"])
                done.append(time.perf_counter() - sent)
            else:
                state["errors"] += 1
            lock.notify()

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        with lock:
            while state["in_flight"] >= concurrency:
                lock.wait()
            state["in_flight"] += 1
        sent = time.perf_counter()
        client.async_infer(model, [tensor], callback=lambda result, error, sent=sent: answered(sent, result, error))
    with lock:
        while state["in_flight"]:
            lock.wait()
    elapsed = time.perf_counter() - start
    rtt = np.array(done) * 1e3
    return {"concurrency": concurrency, "batch": batch, "answers": len(done), "errors": state["errors"],
            "frames_per_s": round(len(done) * batch / elapsed, 1),
            "round_trip_p50_ms": round(float(np.percentile(rtt, 50)), 2) if len(rtt) else None,
            "round_trip_p99_ms": round(float(np.percentile(rtt, 99)), 2) if len(rtt) else None}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="grpc://host:port")
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", default="1,4,8", type=lambda t: [int(v) for v in t.split(",")])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    import tritonclient.grpc as module

    client = module.InferenceServerClient(args.url.split("://", 1)[-1])
    rows = [measure(client, module, args.model, k, args.seconds, args.batch) for k in args.concurrency]
    figures = {"machine": machine(), "model": args.model, "url": args.url, "rows": rows}
    for row in rows:
        print("concurrency %(concurrency)d, batch %(batch)d: %(frames_per_s).1f frames/s, round trip p50 "
              "%(round_trip_p50_ms)s ms, p99 %(round_trip_p99_ms)s ms, errors %(errors)d" % row, flush=True)
    print(json.dumps(figures, indent=2))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
