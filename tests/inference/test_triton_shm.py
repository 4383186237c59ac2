"""--triton-shm without a server: region names and stale clean-up, the pool's slots, CUDA shared memory's calls (no
GPU here: tritonclient's cuda_shared_memory module replaced by a recording fake)."""

import os
import sys
import types

import numpy as np
import pytest

from jetcam_app.triton import shm


def test_stale_names_are_this_hosts_and_dead_pids_only():
    dead, alive = 999999, os.getpid()
    assert shm.stale("jetcam_triton_box_%d_1_0_in" % dead, "box", alive=lambda pid: False)
    assert shm.stale("/jetcam_triton_box_%d_1_0_in" % dead, "box", alive=lambda pid: False)
    assert not shm.stale("jetcam_triton_box_%d_1_0_in" % alive, "box")
    assert not shm.stale("jetcam_triton_other_%d_1_0_in" % dead, "box", alive=lambda pid: False)
    assert not shm.stale("triton_python_backend_shm_region_1", "box", alive=lambda pid: False)


def test_remove_stale_segments_unlinks_only_dead_clients(tmp_path):
    for name in ("jetcam_triton_box_11_1_0_in", "jetcam_triton_box_%d_1_0_in" % os.getpid(), "other"):
        (tmp_path / name).write_bytes(b"x")
    removed = shm.remove_stale_segments("box", str(tmp_path), alive=lambda pid: pid != 11)
    assert removed == ["jetcam_triton_box_11_1_0_in"]
    assert sorted(os.listdir(str(tmp_path))) == sorted(["jetcam_triton_box_%d_1_0_in" % os.getpid(), "other"])


def test_region_names_of_grpc_json_and_http_answers():
    assert shm.region_names({"regions": {"a": {"name": "a"}, "b": {}}}) == ["a", "b"]
    assert shm.region_names([{"name": "a"}, {"name": "b"}]) == ["a", "b"]
    assert shm.region_names({}) == [] and shm.region_names(None) == []


def test_is_local():
    assert shm.is_local("127.0.0.1:8001") and shm.is_local("localhost:8001") and shm.is_local("[::1]:8001")
    assert not shm.is_local("203.0.113.7:8001")


class FakeError(Exception):
    pass


class FakeRegions:
    """Records what the pool asks of a region maker; `refuse` makes the server refuse every registration."""

    kind = "system"
    errors = (FakeError,)

    def __init__(self, refuse=False):
        self.refuse = refuse
        self.created, self.registered, self.destroyed, self.written = [], [], [], []

    def create(self, name, size):
        self.created.append((name, size))
        return name

    def register(self, name, handle, size):
        if self.refuse:
            raise FakeError("Unable to open shared memory region")
        self.registered.append(name)

    def unregister(self, name):
        if name in self.registered:
            self.registered.remove(name)

    def status(self):
        return list(self.registered)

    def write(self, handle, array):
        self.written.append((handle, array.nbytes))

    def read(self, handle, dtype, shape):
        return np.zeros(shape, dtype)

    def destroy(self, handle):
        self.destroyed.append(handle)


class FakeTensor:
    def __init__(self):
        self.shm = None

    def set_shared_memory(self, name, size, offset=0):
        self.shm = (name, size)


def test_pool_slots_sizes_bind_release_and_close():
    regions = FakeRegions()
    pool = shm.SharedMemoryPool(regions, ("image", 100), [("detections", np.float32, 24)], max_batch=4,
                                host="box").open()
    assert [size for _, size in regions.created] == [400, 96]  # max_batch frames each
    first = pool.acquire()
    second = pool.acquire()  # a second request in flight: a second slot, made on demand
    assert first is not None and second is not None and first is not second
    assert len(regions.registered) == 4 and pool.made == 2
    inp, out = FakeTensor(), FakeTensor()
    pool.bind(first, inp, np.zeros((2, 100), np.uint8), [out])
    assert inp.shm == (first.tensors[0][0], 200) and out.shm == (first.tensors[1][0], 48)  # this batch's bytes
    assert [a.shape for a in pool.read(first, [[2, 24 // 4]])] == [(2, 6)]
    pool.release(first)
    assert pool.acquire() is first  # reused, not made again
    pool.retire(second)  # its request failed: the old server may still write into it
    third = pool.acquire()
    assert third is not second and pool.made == 3
    pool.reregister()  # a new server: the retired slot is free again, every slot registered anew
    assert pool.acquire() is second and len(regions.registered) == 6
    pool.close()
    pool.close()
    assert regions.registered == [] and sorted(regions.destroyed) == sorted(n for n, _ in regions.created)
    assert pool.acquire() is None


def test_pool_refused_by_the_server_is_unavailable_and_leaves_nothing():
    regions = FakeRegions(refuse=True)
    with pytest.raises(shm.SharedMemoryUnavailable, match="Unable to open"):
        shm.SharedMemoryPool(regions, ("image", 100), [("out", np.float32, 4)], 1, host="box").open()
    assert regions.destroyed == [regions.created[0][0]]  # the one region made before the refusal


def test_pool_names_carry_host_and_pid():
    pool = shm.SharedMemoryPool(FakeRegions(), ("image", 1), [], 1, host="box")
    assert pool.stem.startswith("jetcam_triton_box_%d_" % os.getpid())
    assert shm.stale(pool.stem + "_0_in", "box", alive=lambda pid: False)


def test_cuda_regions_register_the_ipc_handle_on_the_device(monkeypatch):
    calls = []
    fake = types.ModuleType("tritonclient.utils.cuda_shared_memory")
    fake.CudaSharedMemoryException = type("CudaSharedMemoryException", (Exception,), {})
    fake.create_shared_memory_region = lambda name, size, device: calls.append(("create", name, size, device)) or name
    fake.get_raw_handle = lambda handle: b"ipc-" + handle.encode()
    fake.set_shared_memory_region = lambda handle, arrays: calls.append(("set", handle, arrays[0].nbytes))
    fake.get_contents_as_numpy = lambda handle, dtype, shape: np.ones(shape, dtype)
    fake.destroy_shared_memory_region = lambda handle: calls.append(("destroy", handle))
    monkeypatch.setitem(sys.modules, "tritonclient.utils.cuda_shared_memory", fake)
    pytest.importorskip("tritonclient.utils")

    def call(method, *args, **kwargs):
        calls.append((method,) + args + tuple(sorted(kwargs.items())))
        return {"regions": {}}

    regions = shm.regions_for("cuda", call, "grpc")
    assert regions.kind == "cuda"
    pool = shm.SharedMemoryPool(regions, ("image", 8), [("out", np.float32, 4)], 2, host="box").open()
    name_in = pool.stem + "_0_in"
    assert ("get_cuda_shared_memory_status", ("as_json", True)) in calls
    assert ("create", name_in, 16, 0) in calls
    assert ("register_cuda_shared_memory", name_in, b"ipc-" + name_in.encode(), 0, 16) in calls
    slot = pool.acquire()
    pool.bind(slot, FakeTensor(), np.zeros((1, 8), np.uint8), [FakeTensor()])
    assert ("set", name_in, 8) in calls
    assert pool.read(slot, [[1, 1]])[0].tolist() == [[1.0]]
    pool.close()
    assert ("unregister_cuda_shared_memory", name_in) in calls and ("destroy", name_in) in calls


def test_open_pool_notes_why_it_falls_back(monkeypatch):
    served = types.SimpleNamespace(input_type="UINT8", input_name="image", frame_bytes=lambda: 3,
                                   output_specs=lambda: [("detections", np.float32, 24)])
    monkeypatch.setitem(sys.modules, "tritonclient.utils.cuda_shared_memory", None)  # no cuda-python, no CUDA
    pool, note = shm.open_pool("cuda", None, "grpc", "grpc://127.0.0.1:8001", "127.0.0.1:8001", served, 1)
    assert pool is None and "cuda shared memory does not import here" in note
    pool, note = shm.open_pool("system", None, "grpc", "grpc://gpu-server:8001", "203.0.113.7:8001", served, 1)
    assert pool is None and "not on this machine" in note
    jpeg = types.SimpleNamespace(input_type="BYTES")
    assert shm.open_pool("system", None, "grpc", "u", "127.0.0.1:1", jpeg, 1) == (None, "JPEG frames (BYTES) go over "
                                                                                   "the network")
