"""Whether this machine is an NVIDIA Jetson (L4T release file, or the device-tree model name)."""
from __future__ import annotations

import os


def is_jetson() -> bool:
    if os.path.exists("/etc/nv_tegra_release"):
        return True
    try:
        with open("/proc/device-tree/model", "rb") as f:
            return b"jetson" in f.read().lower()
    except OSError:
        return False
