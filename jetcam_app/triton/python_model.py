"""Triton Python-backend model: runs the exported ONNX core with ONNX Runtime inside the server (copied as model.py).

For servers without the ONNX Runtime backend (PyTriton's bundled tritonserver has only the Python backend).
It imports only numpy, onnxruntime and Triton's own triton_python_backend_utils, never jetcam_app.
"""
import json
import os

import numpy as np


class TritonPythonModel:
    """Batches every request the server hands over into one ONNX Runtime run, then splits the outputs back."""

    def initialize(self, args):
        import onnxruntime

        config = json.loads(args["model_config"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
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
            parts = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            if not sizes:
                sizes = [p.shape[0] for p in parts]
            feeds[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        outputs = self.session.run(self.output_names, feeds)
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]))
                       for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self):
        self.session = None
