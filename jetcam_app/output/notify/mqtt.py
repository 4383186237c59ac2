"""The MQTT connection (paho-mqtt, 1.6 on Python 3.6, 2.x elsewhere): `PREFIX/available` held `online` while
connected and turned `offline` by the broker through the last will when the app dies; messages go out one at a time
from a bounded outbox, waiting for the broker while it is away (paho reconnects with backoff); a refused login is
one clear error and the run goes on without MQTT. Credentials are never logged or echoed."""

import collections
import json
import logging
import ssl
import threading
from typing import Any, Callable, Optional, Tuple

from ...errors import BackendUnavailable
from ...notify_config import PASSWORD_ENV, MqttSpec
from .outbox import Closing, Outbox, finite
from .topics import Topics

log = logging.getLogger(__name__)
WINDOW = 200  # messages out to the broker at once, awaiting its receipt
_REFUSED = {4: "bad user name or password", 5: "not authorised", 134: "bad user name or password",
            135: "not authorised", 2: "client id rejected", 133: "client id rejected"}


def _paho():
    try:
        import paho.mqtt.client as mqtt  # type: ignore
    except ImportError as e:
        raise BackendUnavailable("--mqtt needs paho-mqtt: pip install -e '.[mqtt]' (or pip install paho-mqtt)") from e
    return mqtt


def _code(args: Tuple[Any, ...], index: int) -> int:
    """A callback's reason code as an int, from paho 1.x (an int) or 2.x (a ReasonCode)."""
    rc = args[index] if len(args) > index else 0
    return int(getattr(rc, "value", rc) or 0)


class MqttOutput:
    def __init__(self, spec: MqttSpec, on_online: Optional[Callable[["MqttOutput"], None]] = None):
        mqtt = _paho()
        self.spec = spec
        self.topics = Topics(spec.prefix, spec.discovery_prefix)
        self.reconnects = 0
        self.error = None  # type: Optional[str]
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._inflight = collections.deque()  # type: collections.deque  # MQTTMessageInfo of messages not yet received
        self.received = 0
        self._connects = 0
        self._away_logged = False
        self._on_online = on_online  # Home Assistant came (back) online: discovery again
        client_id = spec.client_id or "jetcam-%s" % spec.prefix.replace("/", "-")
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2.x; 1.x takes the arguments without it
            self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        else:
            self._client = mqtt.Client(client_id=client_id)
        if spec.username:
            self._client.username_pw_set(spec.username, spec.password())
        elif spec.password():
            log.warning("MQTT: $%s is set but no user name: add user@ to the --mqtt URL or output.mqtt.username "
                        "for the broker to use it", PASSWORD_ENV)
        if spec.tls:
            self._client.tls_set(ca_certs=spec.ca, certfile=spec.cert, keyfile=spec.key,
                                 cert_reqs=ssl.CERT_REQUIRED)
        self._client.will_set(self.topics.available, "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_inflight_messages_set(WINDOW)
        self._client.on_connect = self._connected_cb
        self._client.on_disconnect = self._disconnected_cb
        self._client.on_connect_fail = self._connect_failed_cb
        self._client.on_message = self._message_cb
        self.outbox = Outbox("MQTT %s:%d" % (spec.host, spec.port), self._deliver, spec.queue_size)
        try:
            self._client.connect_async(spec.host, spec.port, keepalive=spec.keepalive_s)
        except (OSError, ValueError) as e:
            self._away("cannot connect (%s)" % e)
        self._client.loop_start()
        log.info("MQTT: publishing to %s (%s/...)", spec.describe(), spec.prefix)

    def _away(self, why: str) -> None:
        if not self._away_logged:
            self._away_logged = True
            log.warning("MQTT broker %s:%d %s; retrying with backoff, messages wait in a queue of %d (the cameras "
                        "go on)", self.spec.host, self.spec.port, why, self.spec.queue_size)

    def _connected_cb(self, client, userdata, flags, *rest) -> None:
        code = _code(rest, 0)
        if code:
            why = _REFUSED.get(code, "refused the connection (code %d)" % code)
            self.error = "the broker refused the login: %s" % why
            log.error("MQTT broker %s:%d refused the login (%s); the run goes on without MQTT (check the user in "
                      "--mqtt and the password in $%s or output.mqtt.password_file)", self.spec.host, self.spec.port,
                      why, PASSWORD_ENV)
            client.disconnect()  # no reconnecting with a refused login
            return
        self._connects += 1
        if self._connects > 1:
            self.reconnects += 1
            log.info("MQTT broker %s:%d: connected again", self.spec.host, self.spec.port)
        self._away_logged = False
        client.publish(self.topics.available, "online", qos=1, retain=True)
        if self.spec.discovery:
            client.subscribe(self.topics.ha_status, qos=1)
        self._connected.set()
        if self._on_online is not None and self.spec.discovery:
            self._on_online(self)

    def _disconnected_cb(self, client, userdata, *rest) -> None:
        self._connected.clear()
        if self.error is None and not self.outbox.closing:
            self._away("connection lost")

    def _connect_failed_cb(self, client, userdata) -> None:
        # a failed TLS handshake looks the same from here: name the likely fix
        self._away("not reachable" + (" (with TLS: is output.mqtt.ca the CA that signed the broker's certificate?)"
                                      if self.spec.tls else ""))

    def _message_cb(self, client, userdata, message) -> None:
        if message.topic == self.topics.ha_status and message.payload == b"online" and self._on_online:
            self._on_online(self)  # Home Assistant restarted: its discovery configs go again

    def publish(self, topic: str, payload: Any, retain: bool = False) -> bool:
        """Queue a message (a dict or list goes as JSON, bytes as they are); never blocks."""
        if isinstance(payload, (dict, list)):
            try:
                payload = json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False)
            except ValueError:  # a NaN or infinity: null, as events.jsonl writes it (never an error in the frame's way)
                payload = json.dumps(finite(payload), separators=(",", ":"), sort_keys=True)
        return self.outbox.put((topic, payload, retain))

    def _deliver(self, message: Tuple[str, Any, bool]) -> bool:
        """Hand the message to paho once connected; up to WINDOW of them wait for the broker's receipt at once
        (one at a time was the bottleneck: docs/performance.md; paho keeps unreceipted QoS 1/2 messages and sends
        them again after a reconnect)."""
        topic, payload, retain = message
        while not self._connected.is_set():
            if self.error is not None:
                return False
            self.outbox.wait(0.1)
        if self.error is not None:
            return False
        info = self._client.publish(topic, payload, qos=self.spec.qos, retain=retain)
        with self._lock:
            self._inflight.append(info)
        self._settle(WINDOW)
        return True

    def _settle(self, most: int) -> None:
        """Count the received ones; wait while more than `most` are still out."""
        while self._settle_now() > most and self.error is None:
            self.outbox.wait(0.001)

    def _settle_now(self) -> int:
        """Count the received ones, oldest first; how many are still out."""
        with self._lock:
            while self._inflight and self._inflight[0].is_published():
                self._inflight.popleft()
                self.received += 1
            return len(self._inflight)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued (up to timeout_s), then say `offline` and leave cleanly; messages the broker has
        not received by then count as dropped."""
        self.outbox.close(timeout_s)
        try:
            self._settle(0)  # the last receipts, within the same drain time (wait() raises Closing past it)
        except Closing:
            pass
        if self._connected.is_set():
            info = self._client.publish(self.topics.available, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()

    def counts(self) -> dict:
        """published: received by the broker; dropped: over the queue's bound, or not received by the end."""
        out = self._settle_now()
        counts = self.outbox.counts()
        with self._lock:
            received = self.received
        closed = self.outbox.closed
        return {"published": received, "dropped": counts["dropped"] + (out if closed else 0),
                "failed": counts["failed"], "queued": counts["queued"] + (0 if closed else out)}

    def summary(self) -> dict:
        out = dict(self.counts(), broker=self.spec.describe(), reconnects=self.reconnects)
        if self.error:
            out["error"] = self.error
        return out

