"""The Stages contract: the eager and the fused stages both answer it, and make_stages picks between them from the
pipeline.cuda_graph option and what the engine declares, never from backend names."""
import pytest

from jetcam_app.config import load_config
from jetcam_app.inference.adapters.base import create_adapter
from jetcam_app.inference.engines.base import Capabilities, create_engine
from jetcam_app.inference.engines.torch_engine import TorchCpuEngine
from jetcam_app.inference.fused_stages import FusedStages, make_stages
from jetcam_app.inference.host_buffers import HostFramePool
from jetcam_app.inference.stages import EagerStages, Stages


class FusingCpuEngine(TorchCpuEngine):
    """The CPU engine declaring what the CUDA engine declares: the choice is made on capabilities alone."""

    capabilities = Capabilities(device="cpu", precisions=("fp32",), fuses_stages=True)


@pytest.fixture(scope="module")
def config():
    return load_config(None, {"model.name": "nanodet", "engine.backend": "cpu", "model.random_weights": True})


@pytest.fixture(scope="module")
def adapter(config):
    return create_adapter(config.model)


@pytest.mark.parametrize("make", [
    lambda adapter, engine: EagerStages(adapter, engine),
    lambda adapter, engine: FusedStages(adapter, engine, outline_boxes=True),
], ids=["eager", "fused"])
def test_both_stages_answer_the_protocol(config, adapter, make):
    stages = make(adapter, create_engine(config.engine))
    assert isinstance(stages, Stages)
    assert isinstance(stages.in_flight, int) and stages.in_flight >= 1
    assert stages.host_buffers is None or isinstance(stages.host_buffers, HostFramePool)
    assert isinstance(stages.outlines_on_device, bool)
    assert stages.fallbacks is None or isinstance(stages.fallbacks, int)
    for method in ("prepare", "submit", "finish"):
        assert callable(getattr(stages, method))


def test_the_eager_stages_on_the_cpu(config, adapter):
    stages = EagerStages(adapter, create_engine(config.engine), in_flight=3)
    assert stages.in_flight == 1  # the CPU does the work in submit(): nothing to overlap
    assert stages.host_buffers is None and stages.outlines_on_device is False and stages.fallbacks is None
    stages.prepare((240, 320, 3))  # nothing to capture; any shape is taken as it comes


def test_the_fused_stages_without_a_gpu_pool_draw_no_outlines(config, adapter):
    stages = FusedStages(adapter, create_engine(config.engine), outline_boxes=True, in_flight=3)
    assert stages.in_flight == 3 and stages.fallbacks == 0
    assert stages.host_buffers is None and stages.outlines_on_device is False


@pytest.mark.parametrize("engine_cls, cuda_graph, expected", [
    (TorchCpuEngine, True, EagerStages),  # the engine cannot be fused: the option changes nothing
    (TorchCpuEngine, False, EagerStages),
    (FusingCpuEngine, True, FusedStages),  # the default where the engine allows it (--backend cuda)
    (FusingCpuEngine, False, EagerStages),  # --no-cuda-graph
])
def test_make_stages_follows_the_option_and_the_capabilities(config, adapter, engine_cls, cuda_graph, expected):
    stages = make_stages(adapter, engine_cls(config.engine), cuda_graph, in_flight=2)
    assert type(stages) is expected


def test_the_cuda_backend_declares_the_fused_graph_and_the_others_do_not():
    from jetcam_app.inference.engines.base import capabilities_of
    from jetcam_app.registry import BACKENDS

    fusing = [name for name in BACKENDS.choices() if capabilities_of(name).fuses_stages]
    assert fusing == ["cuda"]
    assert capabilities_of("cuda").device == "cuda" and capabilities_of("cpu").device == "cpu"
    assert not hasattr(BACKENDS.get("cuda"), "fuses_stages")  # the capabilities are the one place it is said
