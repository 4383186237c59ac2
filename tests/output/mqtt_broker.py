"""A real MQTT broker for the tests: Debian's mosquitto on a free loopback port (the set-up installs it), with
optional password file and TLS listener; and a paho subscriber that records what arrives."""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
needs_broker = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (scripts/setup.sh --test "
                                  "installs it from Debian)")


def _paho():
    return pytest.importorskip("paho.mqtt.client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, folder, users=None, tls=None):
        self.folder = str(folder)
        self.port = free_port()
        self.users = users or {}
        self.tls = tls  # (ca, cert, key) paths
        self.proc = None
        lines = ["listener %d 127.0.0.1" % self.port, "persistence false",
                 "log_dest file %s" % os.path.join(self.folder, "mosquitto.log")]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to its own user, who cannot read pytest's tmp folders
        if self.users:
            passwd = os.path.join(self.folder, "passwd")
            open(passwd, "w").close()
            for user, password in self.users.items():
                subprocess.check_call([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b",
                                       passwd, user, password])
            os.chmod(passwd, 0o600)
            lines += ["allow_anonymous false", "password_file %s" % passwd]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += ["cafile %s" % tls[0], "certfile %s" % tls[1], "keyfile %s" % tls[2]]
        self.conf = os.path.join(self.folder, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited: %s" % open(os.path.join(self.folder, "mosquitto.log")).read())
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on %d" % self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class Subscriber:
    """Records (topic, payload bytes, retain flag) of everything under `topic`."""

    def __init__(self, port, topic="#", tls_ca=None, user=None, password=None, host="127.0.0.1"):
        mqtt = _paho()
        self.messages = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        if hasattr(mqtt, "CallbackAPIVersion"):
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub-%d" % free_port())
        else:
            self.client = mqtt.Client(client_id="test-sub-%d" % free_port())
        if user:
            self.client.username_pw_set(user, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(host, port, 30)
        self.client.subscribe(topic, 1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the test's subscriber was not subscribed"

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def on(self, topic):
        with self._lock:
            return [m for m in self.messages if m[0] == topic]

    def wait_for(self, predicate, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                if predicate(list(self.messages)):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def self_signed(folder):
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it (openssl)."""
    folder = str(folder)
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ca_key, ca, key, csr, cert = (os.path.join(folder, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                                   "server.pem"))
    ext = os.path.join(folder, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *args: subprocess.check_call([openssl] + list(args), stdout=subprocess.DEVNULL,  # noqa: E731
                                              stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=jetcam test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", ext)
    return ca, cert, key
