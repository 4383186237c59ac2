"""What a user's ONNX outputs mean: the decoder picked from their shapes (or forced), the class names (the file's
metadata, a labels file, or class_N), and the YOLO decodings to candidate boxes and class scores in torch."""

import ast
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ...errors import ConfigError, WeightsError
from .onnx_file import OnnxFileInfo, TensorInfo

DECODERS = ("yolov8", "yolov5", "end2end", "classify")
DECODER_HELP = ("yolov8: [B, 4+nc, N] (Ultralytics YOLOv8 / YOLO11 detect: cx, cy, w, h, class scores); "
                "yolov5: [B, N, 5+nc] (YOLOv5 / YOLOv7: cx, cy, w, h, objectness, class scores); "
                "end2end: [B, N, 6] (NMS inside the graph: Ultralytics nms=True, YOLOv10, YOLO26: x1, y1, x2, y2, "
                "score, class); classify: [B, C] (logits or probabilities)")


def _true(text: Optional[str]) -> bool:
    return str(text).strip().lower() in ("true", "1")


def _int(d) -> int:
    return d if isinstance(d, int) else 0


def choose_decoder(info: OnnxFileInfo, output_dims: Sequence[Tuple[int, ...]], forced: str = "auto") -> str:
    """yolov8, yolov5 or classify for the file's first output (dims with every axis known, from a run or the file);
    `forced` (--decoder) wins where its shape fits. ConfigError naming the shapes found and the decoders known."""
    if forced not in ("auto",) + DECODERS:
        raise ConfigError("unknown decoder '%s'; choose one of: auto, %s" % (forced, ", ".join(DECODERS)))
    shapes = ", ".join("%s %s" % (o.name, list(d)) for o, d in zip(info.outputs, output_dims))
    first = tuple(output_dims[0]) if output_dims else ()
    task = info.metadata.get("task", "")
    fits = {"classify": len(first) == 2 and first[1] >= 2,
            "yolov8": len(first) == 3 and first[1] >= 5 and first[2] >= 1,
            "yolov5": len(first) == 3 and first[2] >= 6 and first[1] >= 1,
            "end2end": len(first) == 3 and first[2] == 6 and first[1] >= 1}
    if forced != "auto":
        if not fits[forced]:
            raise ConfigError("--decoder %s does not fit %s's first output (%s); %s"
                              % (forced, os.path.basename(info.path), shapes, DECODER_HELP))
        return forced
    if fits["classify"] and task in ("", "classify"):
        return "classify"
    # an end-to-end head says so in Ultralytics' metadata; without it [B, N, 6] reads as a one-class YOLOv5
    if fits["end2end"] and (_true(info.metadata.get("end2end")) or _true(info.metadata.get("nms"))):
        return "end2end"
    if len(first) == 3 and task in ("", "detect"):
        # YOLOv8 puts the few channels before the many anchors ([1, 84, 8400]); YOLOv5 the reverse ([1, 25200, 85])
        if fits["yolov8"] and first[1] < first[2]:
            return "yolov8"
        if fits["yolov5"] and first[1] > first[2]:
            return "yolov5"
    raise ConfigError("cannot tell how to decode %s: its outputs are %s%s; the decoders known are %s; fix: pass "
                      "--decoder yolov8|yolov5|end2end|classify if one of them fits"
                      % (os.path.basename(info.path), shapes, " (task '%s' in its metadata)" % task if task else "",
                         DECODER_HELP))


def _parse_names(text: str) -> Optional[List[str]]:
    """Ultralytics writes names as a Python dict literal ({0: 'person', ...}); others a JSON list or dict."""
    for parse in (ast.literal_eval, json.loads):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, dict):
            try:
                return [str(value[k]) for k in sorted(value, key=int)]
            except (TypeError, ValueError):
                return [str(v) for v in value.values()]
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
    return None


def read_labels_file(path: str) -> List[str]:
    """One name per line, or YAML / JSON with a `names` list or {id: name} map (an Ultralytics dataset YAML)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("cannot read the labels file %s (%s); fix: pass --labels with a text file, one class "
                          "name per line" % (path, e.strerror or e)) from e
    if path.lower().endswith((".yaml", ".yml", ".json")):
        import yaml

        try:
            data = yaml.safe_load(text)  # JSON is YAML too
        except yaml.YAMLError as e:
            raise ConfigError("labels file %s is not valid YAML/JSON (%s)" % (path, str(e).splitlines()[0])) from e
        names = data.get("names") if isinstance(data, dict) else data
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise ConfigError("labels file %s has no `names` list or map; fix: add names: [person, car, ...]" % path)
    return [line.strip() for line in text.splitlines() if line.strip()]


def class_names(info: OnnxFileInfo, n_classes: int, labels_path: Optional[str]) -> Tuple[List[str], str]:
    """(names, where they came from): --labels, else the file's `names` metadata, else class_0..class_{n-1}.
    A list of the wrong length is an error (a labels file for another model gives wrong names silently)."""
    if labels_path:
        names, origin = read_labels_file(labels_path), labels_path
    else:
        names = _parse_names(info.metadata["names"]) if "names" in info.metadata else None
        origin = "the file's metadata"
        if names is None:
            return ["class_%d" % i for i in range(n_classes)], "none found: class_N"
    if n_classes == 0:  # an end-to-end head without names metadata: any labels file's length is its class count
        return names, origin
    if len(names) != n_classes:
        raise ConfigError("%s names %d classes and the model outputs %d; fix: pass --labels with %d names, one per "
                          "line" % (origin, len(names), n_classes, n_classes))
    return names, origin


def metadata_imgsz(info: OnnxFileInfo) -> Optional[Tuple[int, int]]:
    """Ultralytics' `imgsz` metadata ("[640, 640]" or "640") as (height, width)."""
    text = info.metadata.get("imgsz")
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def parse_imgsz(text: Optional[str]) -> Tuple[int, ...]:
    """--imgsz / model.imgsz: "640", "480,640", "[480, 640]" -> (640,) or (480, 640); empty -> ()."""
    import re

    if text is None or not str(text).strip():
        return ()
    numbers = re.findall(r"-?\d+", str(text))
    if not 1 <= len(numbers) <= 2 or re.sub(r"[\d\s,\[\]()x-]", "", str(text)):
        raise ConfigError("model.imgsz must be one size or height,width (640 or 480,640), got %r" % text)
    return tuple(int(n) for n in numbers)


def input_hw(info: OnnxFileInfo, imgsz: Sequence[int]) -> Tuple[Tuple[int, int], str]:
    """The network input's (height, width) and why: the file's fixed shape, else --imgsz, else its metadata, else
    640. --imgsz against a fixed shape is an error: the file cannot take another size."""
    fixed = info.fixed_hw()
    wanted = tuple(int(v) for v in imgsz) if imgsz else ()
    wanted = (wanted[0], wanted[0]) if len(wanted) == 1 else wanted
    if wanted and any(v < 32 or v > 8192 for v in wanted):
        raise ConfigError("--imgsz must be between 32 and 8192 pixels, got %s" % list(wanted))
    if fixed is not None:
        if wanted and tuple(wanted) != fixed:
            raise ConfigError("%s takes a fixed input of %dx%d (height x width); --imgsz %s cannot change it; fix: "
                              "drop --imgsz or export with dynamic=True" % (os.path.basename(info.path), fixed[0],
                                                                           fixed[1], list(wanted)))
        return fixed, "fixed in the file"
    if wanted:
        return (int(wanted[0]), int(wanted[1])), "--imgsz"
    meta = metadata_imgsz(info)
    if meta is not None:
        return meta, "the file's imgsz metadata"
    return (640, 640), "the default for a dynamic input"


def yolo_candidates(output: torch.Tensor, decoder: str, n_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boxes (B, N, 4) xyxy in input pixels and class scores (B, N, nc) from a YOLO head's output. YOLOv8 scores are
    the class scores; YOLOv5 multiplies them by the objectness, as its own NMS does. Channels past the classes (a
    segmentation head's mask coefficients) are ignored."""
    out = output.float()
    if decoder == "yolov8":
        out = out.transpose(1, 2)  # (B, 4+nc, N) -> (B, N, 4+nc)
        scores = out[..., 4:4 + n_classes]
    else:
        scores = out[..., 5:5 + n_classes] * out[..., 4:5]
    centre, size = out[..., 0:2], out[..., 2:4]
    boxes = torch.cat((centre - size / 2, centre + size / 2), -1)
    return boxes, scores


def n_classes_of(decoder: str, dims: Tuple[int, ...], metadata_names: Dict[str, str]) -> int:
    """Classes in the head: the metadata's count where it fits inside the channels (a seg head carries 32 more),
    else every channel past the box (and objectness)."""
    names = _parse_names(metadata_names["names"]) if "names" in metadata_names else None
    if decoder == "end2end":  # class ids, not channels: the names say how many (0: shown as "class N")
        return len(names) if names else 0
    channels = dims[1] - 4 if decoder == "yolov8" else (dims[2] - 5 if decoder == "yolov5" else dims[1])
    if names and 0 < len(names) <= channels:
        return len(names)
    if channels < 1:
        raise WeightsError("the output %s leaves no class channels for the %s decoder" % (list(dims), decoder))
    return channels


def describe_outputs(outputs: Sequence[TensorInfo]) -> str:
    return ", ".join("%s %s" % (o.name, list(o.dims)) for o in outputs)
