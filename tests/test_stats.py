"""The stats poller on this machine: psutil numbers, the reasons jtop/NVML were skipped, a thread that stops."""

import threading

import psutil
import pytest

from jetcam_app.stats import StatsPoller, StatsSample, is_jetson


def nvml_answers():
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_first_sample_is_ready_before_start():
    poller = StatsPoller(interval_s=10.0)
    try:
        sample = poller.latest()
        assert isinstance(sample, StatsSample)
        rss_mb = psutil.Process().memory_info().rss / 2 ** 20
        assert 0.5 * rss_mb < sample.rss_mb < 2 * rss_mb
        assert 0 < sample.ram_used_mb < sample.ram_total_mb
        assert sample.ram_total_mb == pytest.approx(psutil.virtual_memory().total / 2 ** 20)
    finally:
        poller.stop()


@pytest.mark.skipif(is_jetson() or nvml_answers(), reason="this test checks the psutil-only fallback")
def test_psutil_provider_and_the_report_says_why():
    poller = StatsPoller(interval_s=1.0, device="cpu")
    try:
        assert poller.provider == "psutil"
        sample = poller.latest()
        assert sample.provider == "psutil" and sample.gpu_mb is None and sample.gpu_name is None
        report = poller.provider_report()
        assert report.splitlines()[0] == "stats provider: psutil"
        assert "jtop skipped: not a Jetson" in report
        assert "nvml skipped:" in report
        assert ("nvidia-ml-py is not installed" in report) or ("no NVIDIA driver answered" in report)
    finally:
        poller.stop()


def test_poller_samples_then_stops_and_joins():
    poller = StatsPoller(interval_s=0.01)
    first = poller.latest()
    poller.start()
    poller.start()  # a second start does not add a thread
    assert sum(t.name == "stats-poller" for t in threading.enumerate()) == 1
    assert poller._thread.daemon
    # wait for a new sample without timing assertions: a bounded number of short waits
    for _ in range(500):
        if poller.latest().time_s > first.time_s:
            break
        threading.Event().wait(0.01)
    assert poller.latest().time_s > first.time_s
    poller.stop()
    poller.stop()  # idempotent
    assert not poller.alive
    assert not any(t.name == "stats-poller" for t in threading.enumerate())
    assert isinstance(poller.latest(), StatsSample)  # still readable after stop


def test_context_manager_and_stop_without_start():
    StatsPoller().stop()
    with StatsPoller(interval_s=0.05) as poller:
        assert poller.alive
    assert not poller.alive


def test_cuda_device_without_torch_cuda_stays_quiet():
    # torch is imported here but CUDA was never initialised: the poller must not initialise it
    torch = pytest.importorskip("torch")
    with StatsPoller(interval_s=5.0, device="cuda") as poller:
        sample = poller.latest()
    assert sample.torch_max_allocated_mb is None or torch.cuda.is_initialized()
    if not torch.cuda.is_available():
        assert not torch.cuda.is_initialized()


@pytest.mark.needs_cuda
def test_cuda_memory_reported():
    import torch

    x = torch.ones(64, 1024, 1024, device="cuda")  # 256 MB
    with StatsPoller(interval_s=5.0, device="cuda") as poller:
        sample = poller.latest()
    assert sample.gpu_mb is not None and sample.gpu_mb >= 200
    assert sample.torch_max_allocated_mb >= 256
    assert sample.gpu_name
    del x

