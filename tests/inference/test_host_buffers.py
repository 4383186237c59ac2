"""The frame buffer pool: a buffer is reused only once no frame holds it; a video decodes into its buffers."""
import gc

import cv2
import numpy as np

from jetcam_app.config import SourceConfig
from jetcam_app.inference.host_buffers import HostFramePool, pinned_memory_is_cached
from jetcam_app.sources.spec import create_source
from jetcam_app.sources.synthetic import decode_index


def numpy_pool(limit_bytes=10 ** 9):
    return HostFramePool(lambda shape: np.zeros(shape, np.uint8), lambda storage: storage.view(), limit_bytes)


def test_a_buffer_is_reused_only_after_its_frame_and_every_view_of_it_are_gone():
    pool = numpy_pool()
    first = pool.take((4, 5, 3))
    crop = first[1:3]  # a view (a drawing, a sink) keeps the frame's buffer taken
    del first
    gc.collect()
    second = pool.take((4, 5, 3))
    assert not np.shares_memory(second, crop) and pool.buffers == 2
    del crop
    gc.collect()
    third = pool.take((4, 5, 3))
    assert pool.buffers == 2  # the first buffer came back
    assert not np.shares_memory(third, second)
    assert pool.storage_of(third) is not None and pool.storage_of(np.zeros((4, 5, 3), np.uint8)) is None


def test_a_view_of_part_of_a_buffer_has_no_storage_to_upload_from():
    pool = numpy_pool()
    whole = pool.take((4, 5, 3))
    assert pool.storage_of(whole) is not None
    # a flip or a crop made from the frame has the buffer as its base but not its bytes in order
    for view in (whole[::-1], whole[1:], whole[:, :, ::-1], whole[:2]):
        assert pool.storage_of(view) is None


def test_other_shapes_get_their_own_buffers_and_the_limit_holds():
    pool = numpy_pool(limit_bytes=2 * 60)
    a, b = pool.take((4, 5, 3)), pool.take((2, 10, 3))
    assert a.shape == (4, 5, 3) and b.shape == (2, 10, 3)
    assert pool.take((4, 5, 3)) is None  # 120 bytes in use: the caller decodes into ordinary memory
    assert pool.allocated_bytes == 120


def test_forget_retires_a_buffer():
    pool = numpy_pool()
    a = pool.take((4, 5, 3))
    pool.forget(a)
    assert pool.buffers == 0 and pool.storage_of(a) is None and pool.allocated_bytes == 0
    del a
    gc.collect()
    b = pool.take((4, 5, 3))  # a new buffer: the retired one never comes back, even once its frame is gone
    assert pool.buffers == 1 and pool.allocated_bytes == 60 and pool.storage_of(b) is not None


def test_the_last_freed_buffer_comes_back_first_whichever_thread_freed_it():
    import threading

    pool = numpy_pool()
    frames = [pool.take((2, 2, 3)) for _ in range(4)]
    addresses = [f.__array_interface__["data"][0] for f in frames]
    for i in (2, 0):  # the last reference dies in another thread, as when a sink lets a frame go
        handed = [frames[i]]
        frames[i] = None
        worker = threading.Thread(target=handed.clear)
        worker.start()
        worker.join()
    again = [pool.take((2, 2, 3)) for _ in range(3)]
    assert [a.__array_interface__["data"][0] for a in again[:2]] == [addresses[0], addresses[2]]  # last freed first
    assert pool.buffers == 5  # the third take found nothing free and allocated


def test_video_frames_decode_into_the_pool_and_held_frames_stay_intact(index_video):
    plain = create_source(SourceConfig(uri=index_video))
    pool = numpy_pool()
    pooled = create_source(SourceConfig(uri=index_video), buffers=pool)
    plain.open()
    pooled.open()
    held = []
    for i in range(30):
        expected, frame = plain.read(), pooled.read()
        np.testing.assert_array_equal(frame.image, expected.image)
        assert (pool.storage_of(frame.image) is not None) == (i > 0)  # the first frame was read by open()
        if i % 3 == 0:
            held.append((i, frame))  # queued or being drawn: its buffer must not be written again
        del frame
        gc.collect()
    assert pooled.read() is None
    assert [decode_index(frame.image) for _, frame in held] == [i for i, _ in held]
    assert pool.buffers < 30  # buffers of frames let go were reused
    plain.close()
    pooled.close()


def test_page_locked_frames_only_where_the_cpu_caches_them():
    assert pinned_memory_is_cached(False, (9, 0))  # a desktop or server GPU
    assert pinned_memory_is_cached(True, (8, 7)) and pinned_memory_is_cached(True, (7, 2))  # Orin, Xavier
    assert not pinned_memory_is_cached(True, (5, 3)) and not pinned_memory_is_cached(True, (6, 2))  # Nano, TX2


def test_a_pipeline_on_pooled_frames_writes_what_it_writes_without_the_pool(tmp_path, index_video, monkeypatch):
    """Frames decoded into reused buffers: the recording (drawn on two threads), the raw input recording and the
    predictions are the same as with freshly allocated frames, so no buffer was written while still in use."""
    import jetcam_app.pipeline as pipeline_module
    from jetcam_app.config import load_config
    from jetcam_app.pipeline import Pipeline

    def run(name, pool):
        if pool is not None:
            make_stages = pipeline_module.make_stages

            def with_pool(*args, **kwargs):  # the stages take the pool the sources were built with
                stages = make_stages(*args, **kwargs)
                stages.host_buffers = pool
                return stages

            monkeypatch.setattr(pipeline_module, "frame_pool", lambda *args: pool)
            monkeypatch.setattr(pipeline_module, "make_stages", with_pool)
        out = tmp_path / name
        config = load_config(None, {"source.uri": index_video, "model.name": "nanodet", "engine.backend": "cpu",
                                    "output.out_dir": str(out), "output.headless": True, "overlay.hud": False,
                                    "output.record": str(out / "rec.mp4"), "output.save_input": str(out / "in.mp4"),
                                    "pipeline.draw_threads": 2, "pipeline.queue_size": 4})
        Pipeline(config).run()
        monkeypatch.undo()
        return out

    pool = numpy_pool()
    plain, pooled = run("plain", None), run("pooled", pool)
    assert 1 < pool.buffers < 30
    assert (plain / "predictions.jsonl").read_text() == (pooled / "predictions.jsonl").read_text()
    for name in ("rec.mp4", "in.mp4"):
        a, b = cv2.VideoCapture(str(plain / name)), cv2.VideoCapture(str(pooled / name))
        frames = 0
        while True:
            (ok_a, image_a), (ok_b, image_b) = a.read(), b.read()
            assert ok_a == ok_b
            if not ok_a:
                break
            np.testing.assert_array_equal(image_a, image_b)
            frames += 1
        assert frames == 30


def test_reserved_buffers_are_handed_out_before_any_new_one():
    pool = numpy_pool(limit_bytes=5 * 60)
    assert pool.reserve((4, 5, 3), 3) == 3 and pool.buffers == 3
    taken = [pool.take((4, 5, 3)) for _ in range(3)]
    assert pool.buffers == 3 and all(pool.storage_of(t) is not None for t in taken)
    assert pool.reserve((4, 5, 3), 9) == 5  # the limit holds: 5 buffers of 60 bytes
    assert pool.reserve((4, 5, 3), 2) == 5  # never fewer than there are
