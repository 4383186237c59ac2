"""Triton Python-backend model: runs the exported core inside the server (copied as model.py).

For servers without the ONNX Runtime backend (PyTriton's bundled tritonserver has only the Python backend): the
ONNX with ONNX Runtime, or, on a GPU instance where the repository has model.pt (export-triton --torchscript) and
torch sees CUDA, that TorchScript core with torch. It imports numpy, onnxruntime or torch and Triton's own
triton_python_backend_utils, never jetcam_app.
"""
import json
import os

import numpy as np

try:  # tensors cross the backend's wall through DLPack where torch is here (see _output_tensor)
    import torch
    from torch.utils.dlpack import to_dlpack
except ImportError:
    torch = None


def _output_tensor(pb_utils, name, array):
    """A response tensor, handed over through DLPack where torch is importable: under NumPy 2 the backend's own
    NumPy conversion gives empty outputs and wrong inputs (PyTriton 0.7.0's server, which wants numpy<2)."""
    array = np.ascontiguousarray(array)
    if torch is None:
        return pb_utils.Tensor(name, array)
    return pb_utils.Tensor.from_dlpack(name, to_dlpack(torch.from_numpy(array)))


def _input_array(tensor):
    """A request's tensor as NumPy, through DLPack where torch is importable (see _output_tensor)."""
    if torch is None:
        return tensor.as_numpy()
    return torch.from_dlpack(tensor.to_dlpack()).numpy()


def _jpeg_decoder():
    """A function from JPEG bytes to an HxWx3 uint8 BGR array: OpenCV's, else Pillow's; ImportError naming both."""
    try:
        import cv2

        return lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except ImportError:
        pass
    try:
        import io

        from PIL import Image
    except ImportError:
        raise ImportError("jetcam model.py: the model takes JPEG frames, and the server's Python has neither OpenCV "
                          "nor Pillow to decode them; install one there (pip install pillow), or export with "
                          "--input uint8")
    return lambda data: np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1])


def _decode_jpegs(decoder, tensor):
    """A request's BYTES tensor (B, 1) of JPEG frames as a BxHxWx3 uint8 batch."""
    return np.stack([decoder(bytes(item)) for item in tensor.as_numpy().reshape(-1)])


class TritonPythonModel:
    """Batches every request the server hands over into one ONNX Runtime run, then splits the outputs back."""

    def initialize(self, args):
        if int(np.__version__.split(".")[0]) >= 2 and torch is None:
            import triton_python_backend_utils as pb_utils

            pb_utils.Logger.log_warn("jetcam model.py: NumPy %s without torch in the server's Python; the Python "
                                     "backend's NumPy views may give empty or wrong tensors under NumPy 2 "
                                     "(PyTriton 0.7.0's does): install torch there, or numpy<2" % np.__version__)
        config = json.loads(args["model_config"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        # --input jpeg: the frames come JPEG-encoded (BYTES); the graph takes them decoded
        self.jpeg = _jpeg_decoder() if config["input"][0]["data_type"] == "TYPE_STRING" else None
        if self.jpeg is not None and int(np.__version__.split(".")[0]) >= 2:
            import triton_python_backend_utils as pb_utils

            pb_utils.Logger.log_warn("jetcam model.py: JPEG frames (BYTES) with NumPy %s in the server's Python: "
                                     "PyTriton 0.7.0's backend reads BYTES tensors wrongly under NumPy 2 (the stub "
                                     "dies); install numpy<2 there, or export with --input uint8" % np.__version__)
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.torch_module = None
        if args.get("model_instance_kind") == "GPU" and os.path.isfile(os.path.join(folder, "model.pt")):
            self._load_torch(os.path.join(folder, "model.pt"), int(args.get("model_instance_device_id", 0)),
                             config["input"][0])
        if self.torch_module is None:
            self._load_onnx(os.path.join(folder, "model.onnx"), args)

    def _load_torch(self, path, device_id, spec):
        if torch is None or not torch.cuda.is_available():
            return
        half = spec["data_type"] == "TYPE_FP16"
        dims = [int(d) for d in spec["dims"]]
        dtype = {"TYPE_FP16": torch.float16, "TYPE_UINT8": torch.uint8}.get(spec["data_type"], torch.float32)
        self.device = torch.device("cuda", device_id)
        if not half:  # fp32 means fp32, as the app's own CUDA engine runs it: TF32 convolutions change the outputs
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        module = torch.jit.load(path, map_location=self.device).eval()
        module = module.half() if half else module
        if self.jpeg is not None:  # the graph takes the decoded frame, whose size the config does not say
            self.torch_module = module
            return
        example = torch.zeros([1] + list(dims), dtype=dtype, device=self.device)
        try:  # a graph traced on the CPU creates some tensors there (export-triton warned): ONNX Runtime instead
            with torch.inference_mode():
                module(example)
        except RuntimeError as e:
            import triton_python_backend_utils as pb_utils

            pb_utils.Logger.log_warn("jetcam model.py: model.pt does not run on %s (%s); running model.onnx "
                                     "instead: export with --torchscript on the GPU machine" % (self.device, e))
            return
        self.torch_module = module

    def _load_onnx(self, path, args):
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in available:
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        options = onnxruntime.SessionOptions()
        threads = int(os.environ.get("JETCAM_TRITON_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(path, sess_options=options, providers=providers)

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        feeds = {}
        sizes = []
        for name in self.input_names:
            tensors = [pb_utils.get_input_tensor_by_name(r, name) for r in requests]
            if self.jpeg is not None:
                parts = [_decode_jpegs(self.jpeg, t) for t in tensors]
            else:
                parts = [_input_array(t) for t in tensors]
            if not sizes:
                sizes = [p.shape[0] for p in parts]
            feeds[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        outputs = self._run(feeds)
        responses = []
        start = 0
        for size in sizes:
            tensors = [_output_tensor(pb_utils, name, out[start:start + size])
                       for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _run(self, feeds):
        if self.torch_module is None:
            return self.session.run(self.output_names, feeds)
        with torch.inference_mode():
            x = torch.from_numpy(feeds[self.input_names[0]]).to(self.device, non_blocking=True)
            out = self.torch_module(x)
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            return [o.cpu().numpy() for o in out]

    def finalize(self):
        self.session = None
        self.torch_module = None
