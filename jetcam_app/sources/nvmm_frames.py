"""Jetson cameras and streams whose frames go to CUDA without the CPU's colour conversion.

Today a Jetson's NVMM frames (CSI, the hardware decoder's RTSP and MJPEG) leave through `nvvidconv` as BGRx and
`videoconvert` turns them into BGR on the CPU: the costliest step per frame on a Nano's cores. Here the appsink
takes the BGRx as nvvidconv (the VIC engine) wrote it, the buffer goes up to the engine's device as it lies, and
the fourth byte is dropped there; the frame is a types.DeviceFrame, like NVDEC's. One copy remains, VIC's into
system memory (the same DRAM as the GPU's on a Jetson): mapping NVMM into CUDA (EGLImage, as jetson-utils does in
C++) has no Python binding short of DeepStream's pyds. Needs PyGObject's runner (OpenCV hands over no buffer).
"""

import warnings
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import ConfigError

# torch.from_numpy of the read-only mapped buffer: nothing writes to it, the copy to the device only reads
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

FIX = "use --decode auto or cpu"


def device_frames_choice(mode: str, device: Any, nvmm: bool, gobject_problem: Optional[str],
                         capture: str) -> Tuple[bool, str]:
    """Whether a live source's BGRx frames go to CUDA (source.decode `mode`: auto | gpu | cpu), and the line that
    says why. `nvmm`: its pipeline leaves NVMM on this machine (kinds.leaves_nvmm); `gobject_problem`: why
    PyGObject's Gst does not load, None where it does. --decode gpu on an NVMM path that cannot: ConfigError
    naming the fix."""
    if mode == "cpu":
        return False, "frames converted to BGR on the CPU (--decode cpu)"
    if not nvmm:  # not an error: elsewhere --decode gpu is about video files (NVDEC)
        return False, "frames decoded on the CPU: GPU frames from a camera or a stream need a Jetson's NVMM " \
                      "path (CSI, RTSP, USB MJPEG)"
    if device is None or getattr(device, "type", "cpu") != "cuda":
        reason = "the backend does not run on CUDA"
    elif capture == "opencv":
        reason = "--capture opencv hands over no buffer; --capture gobject (PyGObject) does"
    elif gobject_problem is not None:
        reason = "PyGObject's Gst does not load (%s)" % gobject_problem
    else:
        return True, "NVMM -> nvvidconv BGRx -> CUDA (no videoconvert on the CPU)"
    if mode == "gpu":
        raise ConfigError("--decode gpu: %s; %s" % (reason, FIX))
    return False, "frames converted to BGR on the CPU (auto: %s)" % reason


class DeviceUpload:
    """BGRx views of mapped GStreamer buffers -> H x W x 3 BGR tensors of their own on `device` (a CUDA stream of
    its own, waited for before the buffer is unmapped and before another thread reads the frame)."""

    def __init__(self, device: Any):
        import torch

        self._torch = torch  # imported once, not per frame
        self.device = device
        self._stream = torch.cuda.Stream(device) if getattr(device, "type", "cpu") == "cuda" else None

    def __call__(self, view: np.ndarray) -> Any:
        torch = self._torch
        host = torch.from_numpy(view)  # no copy: the mapped buffer, for this call only
        if self._stream is None:  # tests on a machine without CUDA: the same conversion on the host
            return host[..., :3].contiguous()
        with torch.cuda.stream(self._stream):
            bgr = host.to(self.device)[..., :3].contiguous()  # pageable: the copy has read `view` when it returns
        self._stream.synchronize()
        return bgr
