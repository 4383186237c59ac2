"""A local Triton server from PyTriton's bundled tritonserver (Python backend only), for tests and benchmarks.

The Python-backend stub links the system libpython, so the server runs from a virtualenv made with the
system interpreter (`.venv-triton`, made by `scripts/setup.sh --test`), not from the app's own venv.
"""

import glob
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

from ..config import ROOT

VENV_ENV = "JETCAM_TRITON_VENV"


def triton_venv() -> str:
    return os.environ.get(VENV_ENV) or os.path.join(ROOT, ".venv-triton")


def find_server(venv: Optional[str] = None) -> Dict[str, str]:
    """Paths of the bundled tritonserver, its libraries, the Python backend and the stub for the venv's Python.

    Raises FileNotFoundError naming what is missing and how to make it."""
    venv = venv or triton_venv()
    found = sorted(glob.glob(os.path.join(venv, "lib", "python3.*", "site-packages", "pytriton", "tritonserver")))
    if not found:
        raise FileNotFoundError("no PyTriton tritonserver in %s; make it with scripts/setup.sh --test "
                                "(or /usr/bin/python3 -m venv %s && %s/bin/pip install nvidia-pytriton numpy onnxruntime)"
                                % (venv, venv, venv))
    home = found[-1]
    site = os.path.dirname(os.path.dirname(home))
    version = os.path.basename(os.path.dirname(site))[len("python"):]
    paths = {"home": home, "site_packages": site, "binary": os.path.join(home, "bin", "tritonserver"),
             "libs": os.path.join(site, "nvidia_pytriton.libs"), "backend": os.path.join(home, "backends", "python"),
             "stub": os.path.join(home, "python_backend_stubs", version, "triton_python_backend_stub"),
             "venv_bin": os.path.join(venv, "bin")}
    for key in ("binary", "libs", "backend", "stub"):
        if not os.path.exists(paths[key]):
            raise FileNotFoundError("%s missing from the PyTriton install (%s)" % (key, paths[key]))
    return paths


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalTritonServer:
    """tritonserver on 127.0.0.1 with free ports, serving `repository`; start() waits until it is ready."""

    def __init__(self, repository: str, venv: Optional[str] = None, log_path: Optional[str] = None,
                 extra_args: Optional[List[str]] = None, python_venv: Optional[str] = None):
        """`python_venv`: the environment whose python3 the Python backend embeds (its numpy, onnxruntime, torch);
        default the server's own venv."""
        self.paths = find_server(venv)
        if python_venv:
            self.paths["venv_bin"] = os.path.join(python_venv, "bin")
        self.repository = os.path.abspath(repository)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.workdir = tempfile.mkdtemp(prefix="jetcam-triton-")
        self.log_path = log_path or os.path.join(self.workdir, "tritonserver.log")
        self.extra_args = list(extra_args or [])
        self.process = None  # type: Optional[subprocess.Popen]
        # The server looks for the stub next to the backend library: a backend folder of links, as PyTriton makes.
        backend = os.path.join(self.workdir, "backends", "python")
        os.makedirs(backend)
        for name in os.listdir(self.paths["backend"]):
            if not name.startswith("__"):
                os.symlink(os.path.join(self.paths["backend"], name), os.path.join(backend, name))
        os.symlink(self.paths["stub"], os.path.join(backend, "triton_python_backend_stub"))

    @property
    def grpc_url(self) -> str:
        return "grpc://127.0.0.1:%d" % self.grpc_port

    @property
    def http_url(self) -> str:
        return "http://127.0.0.1:%d" % self.http_port

    def command(self) -> List[str]:
        return [self.paths["binary"], "--model-repository=%s" % self.repository,
                "--backend-directory=%s" % os.path.join(self.workdir, "backends"),
                "--http-address=127.0.0.1", "--http-port=%d" % self.http_port,
                "--grpc-address=127.0.0.1", "--grpc-port=%d" % self.grpc_port,
                "--metrics-address=127.0.0.1", "--metrics-port=%d" % self.metrics_port,
                "--allow-cpu-metrics=false", "--allow-gpu-metrics=false", "--log-verbose=0"] + self.extra_args

    def environment(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (self.paths["libs"], env.get("LD_LIBRARY_PATH")) if p)
        # The stub's embedded interpreter takes its packages (numpy, onnxruntime; torch on a GPU machine) from the
        # first python3 on PATH, ignoring PYTHONPATH: the venv's, where the server came from one.
        if os.path.isdir(self.paths["venv_bin"]):
            env["PATH"] = "%s:%s" % (self.paths["venv_bin"], env.get("PATH", ""))
        env.pop("PYTHONHOME", None)
        return env

    def start(self, timeout_s: float = 60.0) -> "LocalTritonServer":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env=self.environment(), start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("tritonserver exited with %s; its log (%s) ends:\n%s"
                                   % (self.process.returncode, self.log_path, self.log_tail()))
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("tritonserver not ready after %.0f s; its log ends:\n%s" % (timeout_s, self.log_tail()))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen("%s/v2/health/ready" % self.http_url, timeout=1.0) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stub_regions(self) -> List[str]:
        """The Python backend's shared-memory regions of this server's stubs (each stub's command line names its
        region, and its path lies in this server's work folder)."""
        regions = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if len(argv) > 2 and argv[0].startswith(self.workdir) and argv[0].endswith("triton_python_backend_stub"):
                regions.append(argv[2])
        return regions

    def stop(self, kill: bool = False) -> None:
        """Terminate the server (SIGKILL with kill=True: the server vanishes mid-request); safe to call twice. A
        killed server's whole process group goes, its Python-backend stubs with it (they outlive a SIGKILLed server
        otherwise), and the shared-memory regions it can no longer unlink are removed."""
        if self.process is None or self.process.poll() is not None:
            return
        if not kill:
            self.process.terminate()
            try:
                self.process.wait(20.0)
                return
            except subprocess.TimeoutExpired:
                pass
        regions = self.stub_regions()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # start_new_session: the group is the server's
        except ProcessLookupError:
            pass
        self.process.wait(10.0)
        for region in regions:
            try:
                os.unlink(os.path.join("/dev/shm", region.lstrip("/")))
            except OSError:
                pass  # a server in its own mount namespace (the tests') had them in its own /dev/shm

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
