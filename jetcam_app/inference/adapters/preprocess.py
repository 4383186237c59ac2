"""Frame -> network input on the engine's device: upload uint8 first, then resize and normalise there."""

import functools
import threading
from typing import Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F


# A page-locked buffer per thread, reused while the frame shape stays: pinning a new buffer for every
# frame costs more than the copy itself. An event guards it against being overwritten mid-copy.
_staging = threading.local()


def upload(image_bgr: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 on `device`; on CUDA through a reused pinned buffer with a non-blocking copy."""
    tensor = torch.from_numpy(np.ascontiguousarray(image_bgr))
    if device.type != "cuda":
        return tensor
    buffers = _staging.__dict__.setdefault("buffers", {})
    entry = buffers.get(tensor.shape)
    if entry is None:
        buffers.clear()
        entry = buffers[tensor.shape] = [torch.empty(tensor.shape, dtype=torch.uint8).pin_memory(), None]
    pinned, copied = entry
    if copied is not None:
        copied.synchronize()  # the previous frame's copy out of this buffer must be done before we overwrite it
    pinned.copy_(tensor)
    on_device = pinned.to(device, non_blocking=True)
    entry[1] = torch.cuda.Event()
    entry[1].record()
    return on_device


@functools.lru_cache(maxsize=16)
def _constants(mean: Tuple[float, ...], std: Tuple[float, ...], device: torch.device):
    """mean/std as 1x3x1x1 tensors on `device`, made once: building them per frame costs a blocking copy."""
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)  # noqa: E731
    return as_tensor(mean), as_tensor(std)


def letterbox_params(image_hw: Tuple[int, int], size_hw: Tuple[int, int]) -> Tuple[float, int, int]:
    """(scale, pad_x, pad_y) that fit image_hw inside size_hw keeping the aspect ratio, centred."""
    h, w = image_hw
    out_h, out_w = size_hw
    scale = min(out_w / w, out_h / h)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    return scale, (out_w - new_w) // 2, (out_h - new_h) // 2


def prepare(
    image_bgr: np.ndarray,
    size_hw: Tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
    mean: Sequence[float],
    std: Sequence[float],
    rgb: bool,
    letterbox: bool = False,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """A 1x3xHxW batch: stretch (or letterbox) to size_hw, channel order BGR or RGB, (x - mean) / std
    with mean/std in the 0-255 scale. On the CPU the resize runs on uint8 with OpenCV (fast on few
    cores); on CUDA the uint8 frame is uploaded and resized with bilinear interpolation on the GPU.
    """
    if device.type == "cpu":
        return _prepare_cpu(image_bgr, size_hw, dtype, mean, std, rgb, letterbox, pad_value)
    return prepare_tensor(upload(image_bgr, device), size_hw, dtype, mean, std, rgb, letterbox, pad_value)


def _inner_hw(image_hw: Tuple[int, int], size_hw: Tuple[int, int], letterbox: bool) -> Tuple[Tuple[int, int], int, int]:
    if not letterbox:
        return size_hw, 0, 0
    scale, pad_x, pad_y = letterbox_params(image_hw, size_hw)
    return (int(round(image_hw[0] * scale)), int(round(image_hw[1] * scale))), pad_x, pad_y


def _prepare_cpu(image_bgr, size_hw, dtype, mean, std, rgb, letterbox, pad_value) -> torch.Tensor:
    inner_hw, pad_x, pad_y = _inner_hw(image_bgr.shape[:2], size_hw, letterbox)
    resized = image_bgr
    if image_bgr.shape[:2] != inner_hw:
        resized = cv2.resize(image_bgr, (inner_hw[1], inner_hw[0]), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).unsqueeze(0).float()
    return _normalise(x, size_hw, torch.device("cpu"), dtype, mean, std, rgb, letterbox, pad_x, pad_y, pad_value)


def prepare_tensor(
    image_bgr: torch.Tensor,
    size_hw: Tuple[int, int],
    dtype: torch.dtype,
    mean: Sequence[float],
    std: Sequence[float],
    rgb: bool,
    letterbox: bool = False,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """prepare() for an HxWx3 uint8 frame already on the device (or a BxHxWx3 batch of frames of one size: a Bx3xhxw
    batch out): tensor operations with static shapes only (no host sync), so a CUDA graph can capture it."""
    h, w = int(image_bgr.shape[-3]), int(image_bgr.shape[-2])
    inner_hw, pad_x, pad_y = _inner_hw((h, w), size_hw, letterbox)
    x = image_bgr.permute(2, 0, 1).unsqueeze(0) if image_bgr.dim() == 3 else image_bgr.permute(0, 3, 1, 2)
    x = x.float()
    if (h, w) != inner_hw:
        x = F.interpolate(x, size=inner_hw, mode="bilinear", align_corners=False)
    return _normalise(x, size_hw, image_bgr.device, dtype, mean, std, rgb, letterbox, pad_x, pad_y, pad_value)


def _normalise(x, size_hw, device, dtype, mean, std, rgb, letterbox, pad_x, pad_y, pad_value) -> torch.Tensor:
    out_h, out_w = size_hw
    mean_t, std_t = _constants(tuple(mean), tuple(std), device)
    if rgb:
        x = x.flip(1)
    x = (x - mean_t) / std_t
    if letterbox:
        fill = (pad_value - mean_t) / std_t
        canvas = fill.expand(x.shape[0], 3, out_h, out_w).clone()
        canvas[:, :, pad_y:pad_y + x.shape[2], pad_x:pad_x + x.shape[3]] = x
        x = canvas
    return x.to(dtype).contiguous()


def scale_boxes_back(boxes: torch.Tensor, image_hw: Tuple[int, int], size_hw: Tuple[int, int],
                     letterbox: bool = False, normalized: bool = False) -> torch.Tensor:
    """Boxes (N, 4), or (B, N, 4), xyxy in network-input pixels (or 0-1 when normalized) -> pixels of the original
    frame."""
    h, w = image_hw
    out_h, out_w = size_hw
    boxes = boxes.float().clone()
    if normalized:
        boxes[..., 0::2] *= out_w
        boxes[..., 1::2] *= out_h
    if letterbox:
        scale, pad_x, pad_y = letterbox_params(image_hw, size_hw)
        boxes[..., 0::2] = (boxes[..., 0::2] - pad_x) / scale
        boxes[..., 1::2] = (boxes[..., 1::2] - pad_y) / scale
    else:
        boxes[..., 0::2] *= w / out_w
        boxes[..., 1::2] *= h / out_h
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0, w)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0, h)
    return boxes


