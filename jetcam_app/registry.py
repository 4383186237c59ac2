"""Name -> "module:Class" tables for backends, models and sources, imported lazily on first use."""

import importlib
from typing import Dict, List

from .errors import ConfigError


class Registry:
    """A table of named classes; the module is imported only when its name is asked for."""

    def __init__(self, kind: str):
        self.kind = kind
        self._targets = {}  # type: Dict[str, str]
        self._suffixes = {}  # type: Dict[str, str]  # ".onnx" -> target: names that are paths of such files

    def register(self, name: str, target: str) -> None:
        if name in self._targets:
            raise ValueError("%s '%s' is registered twice (%s and %s)" % (self.kind, name, self._targets[name], target))
        if ":" not in target:
            raise ValueError("registry target must be 'module:Class', got %r" % target)
        self._targets[name] = target

    def register_suffix(self, suffix: str, target: str) -> None:
        """Every name ending in `suffix` (a file's path) maps to `target`, unless registered by itself."""
        if ":" not in target:
            raise ValueError("registry target must be 'module:Class', got %r" % target)
        self._suffixes[suffix.lower()] = target

    def choices(self) -> List[str]:
        return list(self._targets)

    def _target(self, name: str):
        if name in self._targets:
            return self._targets[name]
        return next((t for suffix, t in self._suffixes.items() if str(name).lower().endswith(suffix)), None)

    def __contains__(self, name: str) -> bool:
        return self._target(name) is not None

    def get(self, name: str):
        target = self._target(name)
        if target is None:
            extra = "".join(", or a path ending in %s" % s for s in self._suffixes)
            raise ConfigError("unknown %s '%s'; choose one of: %s%s" % (self.kind, name, ", ".join(self.choices()),
                                                                        extra))
        module_name, class_name = target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, class_name)


BACKENDS = Registry("backend")
BACKENDS.register("cpu", "jetcam_app.inference.engines.torch_engine:TorchCpuEngine")
BACKENDS.register("cuda", "jetcam_app.inference.engines.torch_engine:TorchCudaEngine")
BACKENDS.register("onnxruntime", "jetcam_app.inference.engines.onnxruntime_engine:OnnxRuntimeEngine")
BACKENDS.register("trt", "jetcam_app.inference.engines.tensorrt_engine:TensorRTEngine")
BACKENDS.register("torch2trt", "jetcam_app.inference.engines.torch2trt_engine:Torch2TRTEngine")
BACKENDS.register("triton", "jetcam_app.inference.engines.triton_engine:TritonEngine")

MODELS = Registry("model")
MODELS.register("nanodet", "jetcam_app.inference.adapters.nanodet:NanoDetAdapter")
MODELS.register("ssd300_vgg16", "jetcam_app.inference.adapters.detection:Ssd300Vgg16Adapter")
MODELS.register("ssdlite320_mobilenet_v3_large", "jetcam_app.inference.adapters.detection:SsdLite320Adapter")
MODELS.register("mobilenet_v2", "jetcam_app.inference.adapters.classification:MobileNetV2Adapter")
MODELS.register("alexnet", "jetcam_app.inference.adapters.classification:AlexNetAdapter")
MODELS.register("resnet18", "jetcam_app.inference.adapters.classification:ResNet18Adapter")
MODELS.register("efficientnet_lite0", "jetcam_app.inference.adapters.classification:EfficientNetLite0Adapter")
MODELS.register("movenet", "jetcam_app.inference.adapters.movenet:MoveNetAdapter")  # pose, 17 COCO keypoints
MODELS.register("movenet_thunder", "jetcam_app.inference.adapters.movenet:MoveNetThunderAdapter")
MODELS.register("selfie", "jetcam_app.inference.adapters.selfie:SelfieAdapter")  # person segmentation
MODELS.register("blazepose", "jetcam_app.inference.adapters.blazepose:BlazePoseAdapter")  # pose, COCO's 17 of 33
MODELS.register_suffix(".onnx", "jetcam_app.inference.adapters.onnx_model:OnnxModelAdapter")  # the user's own model

SOURCES = Registry("source kind")
SOURCES.register("file", "jetcam_app.sources.video_file:VideoFileSource")
SOURCES.register("image", "jetcam_app.sources.image_folder:ImageFolderSource")
SOURCES.register("folder", "jetcam_app.sources.image_folder:ImageFolderSource")
SOURCES.register("test", "jetcam_app.sources.synthetic:SyntheticSource")
SOURCES.register("csi", "jetcam_app.sources.gstreamer:GStreamerSource")
SOURCES.register("usb", "jetcam_app.sources.gstreamer:GStreamerSource")
SOURCES.register("rtsp", "jetcam_app.sources.gstreamer:GStreamerSource")
SOURCES.register("gst", "jetcam_app.sources.gstreamer:GStreamerSource")
