"""Video files decoded on the GPU's NVDEC engines through NVIDIA's PyNvVideoCodec: each frame arrives as a CUDA
tensor and goes into the batch without touching the host (types.DeviceFrame); sinks that show pixels download them.

Same semantics as the OpenCV replay it stands in for (video_file.py): lossless or paced, the sidecar's timestamps,
damaged packets read past and counted, the end of the stream. The container's frame count and rate come from
OpenCV's demuxer (no decoding), as for the CPU path, so both name the same counts.
"""

import functools
import logging
import time
from typing import Any, Optional, Tuple

from ..errors import ConfigError, SourceError, first_line
from ..types import DeviceFrame, Frame
from .video_file import VideoFileSource, check_video_path

log = logging.getLogger(__name__)
# Decode() calls in a row that raise before the stream is given up as damaged beyond repair (NVDEC's parser
# resynchronises on the next intact packet).
MAX_FAILED_PACKETS = 250


class _Opened:
    """What the parent keeps in `_cap` while open: its close() releases it."""

    @staticmethod
    def release() -> None:
        pass


class GpuDecodeUnsupported(SourceError):
    """NVDEC cannot take this file (its codec or chroma format): the caller falls back to the CPU."""


def load_library() -> Any:
    """PyNvVideoCodec, or ImportError (OSError: its libraries do not load, e.g. no NVIDIA driver)."""
    import PyNvVideoCodec  # noqa: N813 - NVIDIA's module name

    return PyNvVideoCodec


@functools.lru_cache(maxsize=1)
def library_status() -> Tuple[Optional[str], str]:
    """(PyNvVideoCodec's version, "") where it loads, else (None, why not): asked once per process."""
    try:
        return str(getattr(load_library(), "__version__", "?")), ""
    except (ImportError, OSError) as e:
        return None, "PyNvVideoCodec is not installed (%s): pip install 'jetcam_app[gpu-decode]'" % first_line(e)


def gpu_decode_choice(mode: str, device: Any) -> Tuple[bool, str]:
    """Whether video files decode on NVDEC for source.decode `mode` (auto | gpu | cpu) with the engine on `device`,
    and the line that says why. --decode gpu where it cannot be: ConfigError naming the fix."""
    if mode == "cpu":
        return False, "decode on the CPU (--decode cpu)"
    if device is None or getattr(device, "type", "cpu") != "cuda":
        reason = "the backend does not run on CUDA"
    else:
        version, reason = library_status()
        if version is not None:
            return True, "decode on the GPU (NVDEC, PyNvVideoCodec %s)" % version
    if mode == "gpu":
        raise ConfigError("--decode gpu: %s; use --decode auto or cpu" % reason)
    return False, "decode on the CPU (auto: %s)" % reason


class NvdecVideoSource(VideoFileSource):
    """A video file through NVDEC. `device`: the engine's CUDA device; frames are BGR like OpenCV's (NVDEC gives
    RGB, reversed on the device by the capture thread, on a stream of its own)."""

    decoded_on = "gpu"

    def __init__(self, spec, config, device, buffers=None):
        self._host_buffers = buffers  # for the CPU decoder, should NVDEC refuse the file
        super().__init__(spec, config, buffers)
        self.device = device
        self.decode_note = ""  # why this source fell back to the CPU
        self._nvc = None  # type: Any
        self._demuxer = None  # type: Any
        self._decoder = None  # type: Any
        self._packets = None  # type: Any
        self._ready = []  # type: list  # decoded frames not yet read (one packet may give several)
        self._stream = None  # type: Any
        self._flushed = False

    @property
    def buffers(self):
        # the pipeline's page-locked pool is for host frames: NVDEC never takes one
        return self._host_buffers if self.decoded_on == "cpu" else None

    @buffers.setter
    def buffers(self, value) -> None:
        self._host_buffers = value

    def open(self) -> None:
        """NVDEC; where it refuses the file (its codec, its chroma format), OpenCV's decoder, with a note."""
        check_video_path(self.path)
        try:
            self._open_gpu()
        except GpuDecodeUnsupported as e:
            self.decoded_on, self.decode_note = "cpu", first_line(e)
            log.warning("%s: %s; decoding it on the CPU", self.path, self.decode_note)
            VideoFileSource.open(self)

    def _open_gpu(self) -> None:
        import cv2
        import torch

        try:
            nvc = self._nvc = load_library()
        except (ImportError, OSError) as e:
            raise GpuDecodeUnsupported("PyNvVideoCodec does not load (%s)" % first_line(e)) from e
        try:
            self._demuxer = nvc.CreateDemuxer(filename=self.path)
            self._decoder = nvc.CreateDecoder(gpuid=self.device.index or 0, codec=self._demuxer.GetNvCodecId(),
                                              usedevicememory=True, outputColorType=nvc.OutputColorType.RGB)
        except Exception as e:  # noqa: B902 - the library raises its own and generic exceptions for what it refuses
            self.close()
            raise GpuDecodeUnsupported("NVDEC does not take %s (%s)" % (self.path, first_line(e))) from e
        self._packets = iter(self._demuxer)
        self._stream = torch.cuda.Stream(self.device)
        cap = cv2.VideoCapture(self.path)  # the container's counts, as the CPU path reads them; nothing decoded
        fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
        cap.release()
        first = self._decode_next()
        if first is None:
            self.close()
            raise GpuDecodeUnsupported("NVDEC decoded no frame of %s" % self.path)
        self._cap = _Opened()
        self._first = first
        self.nominal_fps = fps if fps and fps > 0 else (self._demuxer.FrameRate() or None)
        self.frame_size = (int(first.shape[1]), int(first.shape[0]))
        self._frame_count = int(count) if count and count > 0 else 0
        self.frame_count = self._frame_count or None
        self._first_shape = tuple(first.shape)
        self._start_replay()

    def _start_replay(self) -> None:
        from .timestamps import read_sidecar

        self._timestamps = read_sidecar(self.path) or None
        self._index = 0
        self._origin_s = self._frame_time(0)[1]
        self._start = None

    def _decode_next(self) -> Optional[Any]:
        """The next frame as an H x W x 3 BGR CUDA tensor of its own (the decoder's surface is handed back at
        once), or None at the end of the stream."""
        import torch

        failures = 0
        while not self._ready:
            packet = next(self._packets, None) if not self._flushed else None
            if packet is None:
                if self._flushed:
                    return None
                self._flushed = True
                try:
                    packet = self._nvc.PacketData()  # an empty packet drains the frames the decoder still holds
                except Exception:  # noqa: B902 - a library without it drains at the demuxer's end by itself
                    return None
            try:
                self._ready = list(self._decoder.Decode(packet))
            except Exception as e:  # noqa: B902 - a damaged packet; the parser resynchronises on a later one
                failures += 1
                if failures >= MAX_FAILED_PACKETS:
                    log.warning("%s: %d packets in a row do not decode (%s)", self.path, failures, first_line(e))
                    return None
        decoded = self._ready.pop(0)
        with torch.cuda.stream(self._stream):
            rgb = torch.from_dlpack(decoded)
            bgr = rgb.flip(-1)  # a copy in the channel order every model's preprocessing expects
        self._stream.synchronize()  # ready before another thread reads it, and the surface free to reuse
        return bgr

    def _read_next(self):
        if self.decoded_on == "cpu":
            return VideoFileSource._read_next(self)
        image = self._decode_next()
        return image is not None, image

    def _frame(self, image, index: int, timestamp_s: float) -> Frame:
        if self.decoded_on == "cpu":
            return VideoFileSource._frame(self, image, index, timestamp_s)
        return DeviceFrame(None, index, timestamp_s, time.perf_counter(), device_image=image)

    def close(self) -> None:
        super().close()  # counts the frames a damaged file lost, as the CPU path does
        self._ready = []
        self._packets = self._decoder = self._demuxer = None

    def describe(self) -> str:
        return "%s (%s%s)" % (self.path, "paced" if self.is_live else "lossless replay",
                              ", NVDEC" if self.decoded_on == "gpu" else "")
