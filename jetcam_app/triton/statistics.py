"""Triton's statistics API read as a round-trip split: network (and serialisation) + server queue + compute."""

from typing import Any, Dict, Mapping, Optional, Sequence

PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


def counters(statistics: Mapping[str, Any], model: str) -> Dict[str, int]:
    """{phase_count, phase_ns} for one model from get_inference_statistics (gRPC as_json or HTTP: ints or strings)."""
    for entry in statistics.get("model_stats", []):
        if entry.get("name") != model:
            continue
        stats = entry.get("inference_stats", {})
        out = {}  # type: Dict[str, int]
        for phase in PHASES:
            out[phase + "_count"] = int(stats.get(phase, {}).get("count", 0) or 0)
            out[phase + "_ns"] = int(stats.get(phase, {}).get("ns", 0) or 0)
        out["execution_count"] = int(entry.get("execution_count", 0) or 0)
        out["inference_count"] = int(entry.get("inference_count", 0) or 0)
        return out
    return {}


def round_trip_split(before: Mapping[str, int], after: Mapping[str, int],
                     round_trip_ms: Sequence[float]) -> Optional[Dict[str, Any]]:
    """Mean per request between two snapshots: the client's round trip and the server's queue, compute and total;
    network = round trip - the server's total (it also holds (de)serialisation and the client library's time)."""
    requests = after.get("success_count", 0) - before.get("success_count", 0)
    if requests <= 0 or not round_trip_ms:
        return None

    def mean_ms(phase: str) -> float:
        return (after.get(phase + "_ns", 0) - before.get(phase + "_ns", 0)) / requests / 1e6

    compute = mean_ms("compute_input") + mean_ms("compute_infer") + mean_ms("compute_output")
    server = mean_ms("success")
    client = sum(round_trip_ms) / len(round_trip_ms)
    executions = after.get("execution_count", 0) - before.get("execution_count", 0)
    return {"requests": requests, "round_trip_ms": round(client, 3), "network_ms": round(client - server, 3),
            "server_ms": round(server, 3), "queue_ms": round(mean_ms("queue"), 3), "compute_ms": round(compute, 3),
            "mean_batch": round(requests / executions, 2) if executions > 0 else None}
