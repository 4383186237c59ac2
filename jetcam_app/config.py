"""Frozen configuration: the packaged configs/default.yaml, then a user YAML, then CLI overrides; unknown keys are errors."""

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import MASK, ConfigError, mask_secrets_in
from .config_checks import BOUNDS, MAX_BATCH, MAX_SOURCES, PRECISIONS, check_precision, validate  # noqa: F401
from .files import read_yaml, short_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.yaml")
# Renamed keys: old "section.key" -> new "section.key". The old name is still read, with a deprecation warning.
ALIASES = {
    "engine.cuda_graph": "pipeline.cuda_graph",  # the fused graph is a choice of the stages, not of the engine
}
log = logging.getLogger(__name__)


def _field_types(cls) -> Dict[str, Tuple[type, bool]]:
    """field name -> (base type, optional) read from the annotations: int, float, bool, str or Optional[...] of one."""
    out = {}
    for name, annotation in cls.__annotations__.items():
        args = getattr(annotation, "__args__", None) or ()
        optional = type(None) in args
        out[name] = ([a for a in args if a is not type(None)][0] if optional else annotation, optional)
    return out


def _structured(key: str, value: Any, previous: Any = ()) -> Any:
    """A structured key (a source's lines and zones, the MQTT broker, the webhooks) checked and made immutable by
    its parser; the broker's mapping goes over the `previous` one, so a flag adds to a config file's section."""
    from .notify_config import mqtt_from_config, webhooks_from_config
    from .regions import lines_from_config, zones_from_config

    name = key.rpartition(".")[2]
    if name == "mqtt":
        return mqtt_from_config(value, key, previous)
    parsers = {"lines": lines_from_config, "zones": zones_from_config, "webhooks": webhooks_from_config}
    return parsers[name](value, key)


def _coerce(key: str, value: Any, kind: type, optional: bool, previous: Any = ()) -> Any:
    if kind is tuple:
        return _structured(key, value, previous)
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~") and optional):
        if optional:
            return None
        raise ConfigError("%s must not be empty" % key)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError("%s must be true or false, got %s" % (key, short_value(value)))
    if isinstance(value, bool):  # YAML `true` is an int to Python; a count or a rate is never a yes/no
        raise ConfigError("%s must be %s, got %s" % (key, kind.__name__, short_value(value)))
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError) as e:
        raise ConfigError("%s must be %s, got %s" % (key, kind.__name__, short_value(value))) from e


def _yaml_defaults(section: str):
    """Class decorator: every field's default from that section of the packaged default.yaml, the one home of
    the defaults; a field without a YAML value, or a YAML key without a field, fails at import."""
    def decorate(cls):
        values = _PACKAGED.get(section)
        if not isinstance(values, Mapping):
            raise ConfigError("%s has no '%s' section; reinstall jetcam_app" % (DEFAULT_CONFIG, section))
        types = _field_types(cls)
        missing, extra = sorted(set(types) - set(values)), sorted(set(values) - set(types))
        if missing or extra:
            raise ConfigError("%s: section '%s' is missing %s and has unknown %s; every field needs one default there"
                              % (DEFAULT_CONFIG, section, missing or "nothing", extra or "nothing"))
        for name, (kind, optional) in types.items():
            setattr(cls, name, _coerce("%s.%s" % (section, name), values[name], kind, optional))
        return cls
    return decorate


_PACKAGED = read_yaml(DEFAULT_CONFIG)


@dataclass(frozen=True)
@_yaml_defaults("source")
class SourceConfig:
    uri: str
    pace: bool
    width: int
    height: int
    fps: float
    flip: int
    timeout_s: float
    reconnect_attempts: int
    decode_threads: int
    decode: str  # video files: gpu (NVDEC), cpu (OpenCV) or auto (the GPU where it can)
    max_image_mp: float  # images larger than this many megapixels are refused from their header, before decoding
    capture: str
    gst: Optional[str]
    name: Optional[str]  # a short name for logs and file names; several sources get one from their URI
    lines: tuple  # regions.LineSpec: counting lines (they turn tracking on)
    zones: tuple  # regions.ZoneSpec: zones with occupancy and dwell time (they turn tracking on)


@dataclass(frozen=True)
@_yaml_defaults("model")
class ModelConfig:
    name: str  # a built-in model, or the path of a .onnx file
    weights: Optional[str]
    random_weights: bool
    score_threshold: float
    iou_threshold: float
    max_detections: int
    topk: int
    imgsz: Optional[str]  # a .onnx with a free input size: "640" or "480,640" (height, width)
    decoder: str  # a .onnx: auto, yolov8, yolov5 or classify
    labels: Optional[str]  # a .onnx: class names file (one per line, or YAML / JSON with `names`)


@dataclass(frozen=True)
@_yaml_defaults("engine")
class EngineConfig:
    backend: str
    precision: str
    threads: int
    trt_workspace_mb: int
    cache_dir: str
    triton_url: str
    triton_model: Optional[str]
    triton_timeout_s: float
    triton_shm: str  # none, system or cuda (triton/shm.py)


@dataclass(frozen=True)
@_yaml_defaults("pipeline")
class PipelineConfig:
    max_frames: int
    queue_size: int
    target_fps: float
    draw_threads: int
    in_flight: int
    cuda_graph: bool
    max_batch: int


@dataclass(frozen=True)
@_yaml_defaults("output")
class OutputConfig:
    out_dir: Optional[str]
    record: Optional[str]
    headless: Optional[bool]
    save_input: Optional[str]
    bitrate: str  # H.264 recordings (PyAV): 4M, 800k, ... bits per second
    record_segment_s: float  # > 0: recordings split into NAME_0001.mp4, ... of this many seconds
    rtsp_out: int  # > 0: serve rtsp://HOST:PORT/live (one source) or /NAME (each of several)
    rtsp_push: Optional[str]  # push the H.264 stream to this RTSP server (MediaMTX, go2rtc): rtsp://host:8554/path
    http_port: int
    mosaic: bool
    name: str
    exist_ok: bool
    save: Optional[bool]
    http_host: str
    http_token: Optional[str]
    http_token_file: Optional[str]
    mqtt: tuple  # notify_config.MqttSpec, or () = off
    webhooks: tuple  # notify_config.WebhookSpec each
    save_masks: bool  # segmentation models: each frame's mask as a PNG in the run folder's masks/


@dataclass(frozen=True)
@_yaml_defaults("overlay")
class OverlayConfig:
    enabled: bool
    hud: bool


@dataclass(frozen=True)
@_yaml_defaults("tracker")
class TrackerConfig:
    enabled: bool
    track_high_thresh: float
    track_low_thresh: float
    new_track_thresh: float
    track_buffer: int
    match_thresh: float
    fuse_score: bool
    probation_frames: int
    class_match: bool
    trail_frames: int
    workers: int  # worker processes for the trackers (analytics/pool.py); -1 = automatic


@dataclass(frozen=True)
@_yaml_defaults("stats")
class StatsConfig:
    interval_s: float


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    # Two or more sources run together (pipeline.py); a list of one is the same as `source:`.
    sources: Tuple[SourceConfig, ...] = ()


_SECTION_TYPES = {
    "source": SourceConfig, "model": ModelConfig, "engine": EngineConfig, "pipeline": PipelineConfig,
    "output": OutputConfig, "overlay": OverlayConfig, "stats": StatsConfig,
    "tracker": TrackerConfig,
}


def _merge(data: Dict[str, Dict[str, Any]], update: Mapping[str, Any], origin: str) -> None:
    if not isinstance(update, Mapping):
        raise ConfigError("%s: the top level must be a mapping of sections (%s)" % (origin, ", ".join(_SECTION_TYPES)))
    for section, values in update.items():
        if section == "sources":
            data["sources"] = _source_entries(values, origin)  # type: ignore[assignment]  # a list replaces
            continue
        if section not in _SECTION_TYPES:
            raise ConfigError("%s: unknown section %s; valid sections: %s" % (origin, short_value(section),
                                                                               ", ".join(_SECTION_TYPES)))
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError("%s: section '%s' must be a mapping" % (origin, section))
        for key, value in values.items():
            new = ALIASES.get("%s.%s" % (section, key))
            if new is not None:
                log.warning("%s: '%s.%s' is deprecated; use '%s'", origin, section, key, new)
                _merge(data, {new.partition(".")[0]: {new.partition(".")[2]: value}}, origin)
                continue
            types = _field_types(_SECTION_TYPES[section])
            if key not in types:
                raise ConfigError("%s: unknown key %s; valid keys: %s" % (origin, short_value("%s.%s" % (section, key)),
                                                                         ", ".join(types)))
            kind, optional = types[key]
            previous = data.get(section, {}).get(key, ())
            data.setdefault(section, {})[key] = _coerce("%s.%s" % (section, key), value, kind, optional, previous)


def _source_entries(entries: Any, origin: str) -> List[Dict[str, Any]]:
    """The `sources:` list: mappings with a `uri` and optional per-source keys (a plain string is a uri)."""
    if entries is None:
        return []
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, (list, tuple)):
        raise ConfigError("%s: 'sources' must be a list, e.g. sources: [{uri: csi://0}, {uri: rtsp://cam/stream}]"
                          % origin)
    types = _field_types(SourceConfig)
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"uri": entry}
        if not isinstance(entry, Mapping) or not entry.get("uri"):
            raise ConfigError("%s: sources[%d] must be a mapping with a 'uri', e.g. {uri: csi://0, name: left}"
                              % (origin, i))
        values = {}
        for key, value in entry.items():
            if key not in types:
                raise ConfigError("%s: unknown key %s in sources[%d]; valid keys: %s"
                                  % (origin, short_value(key), i, ", ".join(types)))
            kind, optional = types[key]
            values[key] = _coerce("sources[%d].%s" % (i, key), value, kind, optional)
        out.append(values)
    return out


def source_name(uri: str) -> str:
    """A short name for a source from its URI: csi0, usb1, video0, the RTSP host, the file's stem, test, gst."""
    text = uri.strip()
    lower = text.lower()
    camera = re.match(r"^(csi|usb)(?:://|:)?(\d*)", lower)
    if camera and not os.path.exists(text):
        return camera.group(1) + (camera.group(2) or "0")
    device = re.match(r"^(?:v4l2://)?/dev/(video\d+)", lower)
    if device:
        return device.group(1)
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)://([^/?#]*)", lower)
    if scheme and scheme.group(1) not in ("file",):
        host = scheme.group(2).split("@")[-1].split(":")[0]
        name = host if scheme.group(1).startswith("rtsp") and host else scheme.group(1)
    else:
        path = text[len("file://"):] if lower.startswith("file://") else text
        base = os.path.basename(os.path.normpath(os.path.expanduser(path.partition("?")[0])))
        name = os.path.splitext(base)[0] or "source"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:32] or "source"


def _named_sources(entries: List[Dict[str, Any]], base: Dict[str, Any]) -> Tuple[SourceConfig, ...]:
    """Each entry over the `source:` section's values (except its name); names unique, given or derived."""
    inherited = {k: v for k, v in base.items() if k != "name"}
    configs = [SourceConfig(**dict(inherited, **entry)) for entry in entries]
    given = [c.name for c in configs if c.name]
    for i, name in enumerate(c.name for c in configs):
        # a letter or digit too: '.' and '..' name folders, and the page's /sources/<name>/ links would resolve away
        if name and not (re.match(r"^[A-Za-z0-9_.-]{1,64}$", name) and re.search(r"[A-Za-z0-9]", name)):
            raise ConfigError("sources[%d].name %s must be 1-64 letters, digits, '_', '-' or '.' with at least one "
                              "letter or digit (it names files and page links), e.g. cam%d" % (i, short_value(name), i))
    for name in given:
        if given.count(name) > 1:
            raise ConfigError("two sources are named %s; give each source its own name" % short_value(name))
    derived = [source_name("gst://" if c.gst else c.uri) for c in configs]
    unnamed = [d for c, d in zip(configs, derived) if not c.name]
    taken = set(given)
    named = []
    for config, base_name in zip(configs, derived):
        if not config.name:
            name, k = base_name, 0
            if unnamed.count(base_name) > 1 or base_name in taken:
                sep = "_" if base_name[-1].isdigit() else ""
                while True:
                    name = "%s%s%d" % (base_name, sep, k)
                    k += 1
                    if name not in taken:
                        break
            taken.add(name)
            config = dataclasses.replace(config, name=name)
        named.append(config)
    return tuple(named)


def load_config(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """The defaults (configs/default.yaml, via the dataclasses) < `path` < overrides ({"section.key": value}); then validate."""
    data = {}  # type: Dict[str, Dict[str, Any]]
    if path:
        _merge(data, read_yaml(path), path)
    nested = {}  # type: Dict[str, Dict[str, Any]]
    for dotted, value in (overrides or {}).items():
        if dotted == "sources":  # several --source flags: a list of URIs that replaces the file's list
            nested["sources"] = list(value)  # type: ignore[assignment]
            continue
        section, _, key = dotted.partition(".")
        nested.setdefault(section, {})[key] = value
    if "source.uri" in (overrides or {}) and "sources" not in (overrides or {}):
        nested["sources"] = []  # type: ignore[assignment]  # one --source on the command line replaces the file's list
    _merge(data, nested, "command line")
    entries = data.pop("sources", [])  # type: Any
    if len(entries) == 1:  # a list of one is `source:` with that entry's values
        data.setdefault("source", {}).update(entries[0])
        entries = []
    config = Config(sources=_named_sources(entries, data.get("source", {})),
                    **{name: cls(**data.get(name, {})) for name, cls in _SECTION_TYPES.items()})
    validate(config)
    return config


def to_dict(config: Config) -> Dict[str, Any]:
    """The configuration as plain data for echoes (summary.json, --help's defaults): the web token as "***" when
    set, URL passwords masked; the running parts read the frozen config itself."""
    data = dataclasses.asdict(config)
    if data["output"]["http_token"]:
        data["output"]["http_token"] = MASK
    out = config.output  # named tuples: asdict would leave bare tuples
    data["output"]["mqtt"] = out.mqtt._asdict() if out.mqtt else None
    data["output"]["webhooks"] = [dict(w._asdict(), events=list(w.events), headers={
        k: v if v.startswith("${") else MASK for k, v in w.headers}) for w in out.webhooks]
    return mask_secrets_in(data)
