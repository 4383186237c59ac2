"""A stop request (Ctrl-C, SIGTERM) ends a run of endless sources: everything in flight emitted, summary written."""
import threading

from jetcam_app.pipeline import Pipeline

from index_model import IndexAdapter
from test_multi_source import config_for, make_source


def test_stop_request_ends_endless_sources(tmp_path):
    config = config_for(tmp_path)
    sources = [("a", make_source("test://320x240@30")), ("b", make_source("test://320x240@30?live=1"))]
    pipeline = Pipeline(config, sources=sources, adapter=IndexAdapter())
    ticker = threading.Timer(1.5, pipeline.request_stop, args=("SIGINT",))
    ticker.start()
    try:
        summary = pipeline.run()
    finally:
        ticker.cancel()
    assert summary["stop_reason"] == "SIGINT"
    for name in ("a", "b"):
        section = summary["sources"][name]
        assert section["end_reason"] == "SIGINT" and section["frames"]["processed"] > 0
        frames = section["frames"]
        assert frames["processed"] + frames["dropped"] + section["unprocessed_at_stop"] == frames["captured"]
    lines = open(str(tmp_path / "out" / "predictions.jsonl")).read().splitlines()
    assert len(lines) == summary["frames"]["processed"]
