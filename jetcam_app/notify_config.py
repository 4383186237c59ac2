"""Where events go besides events.jsonl, as the user gives it: `--mqtt mqtt://[user@]host:1883[/prefix]` or
`output.mqtt: {url, prefix, client_id, qos, ...}`, and `--webhook URL` or `output.webhooks: [{url, events, ...}]`;
checked here, so a bad one is one line and exit 2 before any camera opens. Secrets never come from a flag or a URL:
the MQTT password from $JETCAM_MQTT_PASSWORD or a file, webhook header values as ${ENV_NAME}."""

import os
import re
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from .errors import ConfigError, mask_secrets
from .files import short_value

PASSWORD_ENV = "JETCAM_MQTT_PASSWORD"
EVENT_TYPES = ("track_started", "track_ended", "line_crossed", "zone_entered", "zone_left", "loitering")
MQTT_EXAMPLE = "--mqtt mqtt://localhost:1883 (or mqtts://user@broker:8883/prefix; the password in $%s)" % PASSWORD_ENV
WEBHOOK_EXAMPLE = "--webhook http://localhost:8123/api/webhook/jetcam"
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class MqttSpec(NamedTuple):
    host: str
    port: int = 1883
    prefix: str = "jetcam"
    tls: bool = False  # mqtts:// or any of ca / cert / key
    username: Optional[str] = None
    password_file: Optional[str] = None  # else $JETCAM_MQTT_PASSWORD; never in the config or the URL
    client_id: Optional[str] = None  # None = jetcam-<prefix>
    qos: int = 1
    keepalive_s: int = 30
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    snapshots: bool = False  # --mqtt-snapshots: the annotated JPEG of each source's latest event, retained
    discovery: bool = False  # --mqtt-discovery: Home Assistant's discovery configs
    discovery_prefix: str = "homeassistant"
    stats_interval_s: float = 5.0
    update_interval_s: float = 5.0  # an object's `update` message at most this often (Frigate: at least once a minute)
    queue_size: int = 1000  # messages waiting while the broker is away; beyond it they are dropped and counted

    def password(self) -> Optional[str]:
        """The password, read when connecting (so it is in no config echo)."""
        if self.password_file:
            try:
                with open(self.password_file, encoding="utf-8") as f:
                    return f.readline().rstrip("\r\n")
            except OSError as e:
                raise ConfigError("output.mqtt.password_file %s cannot be read (%s); point it at a file whose first "
                                  "line is the password" % (self.password_file, e.strerror or e)) from e
        return os.environ.get(PASSWORD_ENV) or None

    def describe(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = "%s@" % self.username if self.username else ""
        return "%s://%s%s:%d/%s" % (scheme, user, self.host, self.port, self.prefix)


class WebhookSpec(NamedTuple):
    url: str
    events: Tuple[str, ...] = ()  # event types sent; () = every one
    timeout_s: float = 5.0
    headers: Tuple[Tuple[str, str], ...] = ()  # values as given: ${ENV_NAME} is read at send time
    retries: int = 4  # attempts after the first, 0.5 s, 1 s, 2 s, 4 s apart
    queue_size: int = 1000

    def header_values(self) -> Dict[str, str]:
        out = {}
        for name, value in self.headers:
            ref = _ENV_REF.match(value)
            out[name] = os.environ.get(ref.group(1), "") if ref else value
        return out


_MQTT_KEYS = {"url": str, "prefix": str, "client_id": str, "qos": int, "keepalive_s": int, "username": str,
              "password_file": str, "ca": str, "cert": str, "key": str, "snapshots": bool, "discovery": bool,
              "discovery_prefix": str, "stats_interval_s": float, "update_interval_s": float, "queue_size": int}
_WEBHOOK_KEYS = {"url": str, "events": list, "timeout_s": float, "headers": dict, "retries": int, "queue_size": int}


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return value.lower() in ("true", "yes", "1", "on")
    elif kind in (int, float) and not isinstance(value, bool):
        try:
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return kind(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(value, kind):
        return value
    raise ConfigError("%s must be %s, got %s" % (key, kind.__name__, short_value(value)))


def _check_prefix(prefix: str, key: str) -> str:
    # the prefix is the root every topic lives under: wildcards or empty levels would publish outside it
    if not prefix or any(c in prefix for c in "#+\0") or prefix.startswith("/") or "//" in prefix \
            or prefix.endswith("/") or prefix.startswith("$"):
        raise ConfigError("%s %s must be topic levels without '#', '+', '$' or empty levels, e.g. jetcam or "
                          "site/jetcam" % (key, short_value(prefix)))
    return prefix


def _mqtt_url(url: str, key: str) -> Dict[str, Any]:
    parts = urlsplit(url)
    # the password first: every later message echoes the URL, and a shortened echo could cut the mask's '@'
    if parts.password is not None:
        raise ConfigError("%s: the password may not be in the URL (it would show in `ps` and the logs); put it in "
                          "$%s or output.mqtt.password_file" % (key, PASSWORD_ENV))
    shown = short_value(mask_secrets(url))
    try:
        port = parts.port
    except ValueError as e:
        raise ConfigError("%s %s is not a broker URL (%s); e.g. %s" % (key, shown, e, MQTT_EXAMPLE)) from e
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError("%s %s is not a broker URL; e.g. %s" % (key, shown, MQTT_EXAMPLE))
    tls = parts.scheme == "mqtts"
    out = {"host": parts.hostname, "port": port or (8883 if tls else 1883), "tls": tls}
    if parts.username:
        out["username"] = parts.username
    if parts.path.strip("/"):
        out["prefix"] = _check_prefix(parts.path.strip("/"), key + " prefix")
    return out


def mqtt_from_config(value: Any, key: str, previous: Any = ()) -> Any:
    """An MqttSpec from a URL or a mapping (over the `previous` spec, so --mqtt-snapshots adds to a config file's
    section), or () where MQTT is off."""
    if value is None or value == () or value == "":
        return ()
    if isinstance(value, MqttSpec):
        return value
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, Mapping):
        raise ConfigError("%s must be a broker URL or a mapping with a url; e.g. %s" % (key, MQTT_EXAMPLE))
    fields = previous._asdict() if isinstance(previous, MqttSpec) else {}
    for name, item in value.items():
        if name not in _MQTT_KEYS:
            raise ConfigError("unknown key %s; valid keys: %s" % (short_value("%s.%s" % (key, name)),
                                                                 ", ".join(_MQTT_KEYS)))
        if item is None:
            continue
        item = _typed("%s.%s" % (key, name), item, _MQTT_KEYS[name])
        if name == "url":
            fields.update(_mqtt_url(item, key))
        else:
            fields[name] = item
    if "host" not in fields:
        raise ConfigError("%s needs a broker url (--mqtt-snapshots and --mqtt-discovery too); e.g. %s"
                          % (key, MQTT_EXAMPLE))
    if fields.get("qos", 1) not in (0, 1, 2):
        raise ConfigError("%s.qos must be 0, 1 or 2, got %s" % (key, fields["qos"]))
    _check_prefix(fields.get("prefix", "jetcam"), key + ".prefix")
    _check_prefix(fields.get("discovery_prefix", "homeassistant"), key + ".discovery_prefix")
    for name in ("keepalive_s", "queue_size"):
        if fields.get(name, 1) < 1:
            raise ConfigError("%s.%s must be at least 1, got %s" % (key, name, fields[name]))
    for name in ("stats_interval_s", "update_interval_s"):
        if not 0.1 <= fields.get(name, 1.0) <= 3600:
            raise ConfigError("%s.%s must be between 0.1 and 3600 seconds, got %s" % (key, name, fields[name]))
    if any(fields.get(name) for name in ("ca", "cert", "key")):
        fields["tls"] = True
    return MqttSpec(**fields)


def _webhook(entry: Any, key: str) -> WebhookSpec:
    if isinstance(entry, WebhookSpec):
        return entry
    if isinstance(entry, str):
        entry = {"url": entry}
    if not isinstance(entry, Mapping) or not entry.get("url"):
        raise ConfigError("%s must be a URL or a mapping with a url; e.g. %s" % (key, WEBHOOK_EXAMPLE))
    fields = {}  # type: Dict[str, Any]
    for name, item in entry.items():
        if name not in _WEBHOOK_KEYS:
            raise ConfigError("unknown key %s; valid keys: %s" % (short_value("%s.%s" % (key, name)),
                                                                 ", ".join(_WEBHOOK_KEYS)))
        fields[name] = _typed("%s.%s" % (key, name), item, _WEBHOOK_KEYS[name])
    parts = urlsplit(fields["url"])
    if parts.username is not None:  # before any message that echoes the URL
        raise ConfigError("%s: no user or password in the URL; send a token header instead, e.g. headers: "
                          "{Authorization: '${JETCAM_WEBHOOK_TOKEN}'}" % key)
    shown = short_value(mask_secrets(fields["url"]))
    try:
        parts.port
    except ValueError:
        raise ConfigError("%s url %s has a bad port; e.g. %s" % (key, shown, WEBHOOK_EXAMPLE))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("%s url %s must be an http:// or https:// URL; e.g. %s" % (key, shown, WEBHOOK_EXAMPLE))
    events = tuple(str(e) for e in fields.get("events", ()))
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ConfigError("%s.events has unknown %s; valid event types: %s" % (key, short_value(unknown[0]),
                                                                              ", ".join(EVENT_TYPES)))
    fields["events"] = events
    fields["headers"] = tuple((str(k), str(v)) for k, v in fields.get("headers", {}).items())
    if not 0.1 <= fields.get("timeout_s", 5.0) <= 120:
        raise ConfigError("%s.timeout_s must be between 0.1 and 120 seconds, got %s" % (key, fields["timeout_s"]))
    if not 0 <= fields.get("retries", 4) <= 20 or fields.get("queue_size", 1) < 1:
        raise ConfigError("%s: retries must be 0-20 and queue_size at least 1" % key)
    return WebhookSpec(**fields)


def webhooks_from_config(value: Any, key: str) -> Tuple[WebhookSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError("%s must be a list of URLs or mappings; e.g. %s" % (key, WEBHOOK_EXAMPLE))
    return tuple(_webhook(entry, "%s[%d]" % (key, i)) for i, entry in enumerate(value))
