"""The bench's instruments: main_thread_split.py on a real CPU pipeline run, emitter_cost.py on the real emitter."""
import os
import sys

import pytest
from conftest import ROOT

from jetcam_app.config import load_config
from jetcam_app.output.emitter import FrameEmitter
from jetcam_app.pipeline import Pipeline
from jetcam_app.sources.lanes import Scheduler

sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_split_accounts_for_the_run_and_puts_everything_back(index_video, tmp_path):
    from main_thread_split import PARTS, main_thread_split

    import jetcam_app.pipeline as pipeline_module

    before = (Scheduler.gather, FrameEmitter.emit, pipeline_module.make_stages)
    runs = []

    def run():
        config = load_config(None, {"source.uri": index_video, "model.name": "nanodet", "engine.backend": "cpu",
                                    "output.out_dir": str(tmp_path), "output.headless": True,
                                    "pipeline.max_frames": 12})
        runs.append(Pipeline(config).run())
        return runs[-1]

    split = main_thread_split(run)
    summary = runs[0]
    assert list(split) == list(PARTS) + ["rest"]
    assert all(split[part] >= 0 for part in PARTS) and split["rest"] > -1.0
    # on the CPU the network runs inside submit(): most of the thread's time
    assert split["submit"] > 0.5 * summary["wall_s"] / summary["frames"]["processed"] * 1e6
    assert split["hand to emitter"] > 0 and split["finish"] > 0
    assert sum(split.values()) == pytest.approx(summary["wall_s"] / summary["frames"]["processed"] * 1e6)
    assert (Scheduler.gather, FrameEmitter.emit, pipeline_module.make_stages) == before


def test_emitter_cost_parts_lie_within_the_total_and_everything_is_put_back():
    from emitter_cost import PARTS, emitter_cost

    before = [cls.__dict__[attr] for cls, attr, _ in PARTS]
    cost = emitter_cost(boxes=30, width=320, height=240, frames=20)
    assert list(cost) == ["total"] + [name for _, _, name in PARTS]
    assert all(value > 0 for value in cost.values())  # every part ran for every frame
    assert sum(cost.values()) - cost["total"] <= cost["total"]  # the parts are disjoint calls inside the total
    assert [cls.__dict__[attr] for cls, attr, _ in PARTS] == before
