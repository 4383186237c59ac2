"""JetPack 4.6 runs Python 3.6, JetPack 5 Python 3.8: vermin checks that nothing newer than the Python the package
declares (setup.cfg's python_requires) crept into the code, its tests and benchmarks."""
import configparser
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def declared_minimum():
    """'3.6' from python_requires = >=3.6."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    match = re.match(r"\s*>=\s*(\d+\.\d+)", cfg.get("options", "python_requires"))
    assert match, "setup.cfg's python_requires should read >=X.Y"
    return match.group(1)


def test_code_runs_on_the_declared_minimum_python():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        pytest.fail("vermin is not installed; run scripts/setup.sh --test")
    paths = [os.path.join(ROOT, p) for p in ("jetcam_app", "run.py", "tests", "bench") if os.path.exists(os.path.join(ROOT, p))]
    # The backports install_requires brings on 3.6 (dataclasses; typing_extensions 4.1 for Protocol) count as there.
    backports = ["--backport", "dataclasses", "--backport", "typing_extensions==4.0"]
    result = subprocess.run([vermin, "-t=%s-" % declared_minimum(), "--no-tips", "--eval-annotations", "--violations", "-q"]
                            + backports + paths,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout
