"""JetPack 5 runs Python 3.8: vermin checks that no newer syntax or stdlib use crept in."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_code_runs_on_python_3_8():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        pytest.fail("vermin is not installed; run scripts/setup.sh --test")
    paths = [os.path.join(ROOT, p) for p in ("jetcam_app", "run.py", "tests", "bench") if os.path.exists(os.path.join(ROOT, p))]
    result = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--eval-annotations", "--violations", "-q"] + paths,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout
