"""torch.load for files that must hold tensors only: weights_only=True where torch has it (1.13+), else a restricted
unpickler that accepts tensors, their storages and plain containers and refuses every other global, so a
malicious pickle is never run on an older torch (JetPack 4.6's 1.10) either."""
import inspect
import pickle
from typing import Any

import torch

# The globals a state dict saved by torch.save pickles: tensor and parameter rebuilders and ordered dicts (storages,
# torch.*Storage, are allowed by name below).
_ALLOWED = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
}
HAS_WEIGHTS_ONLY = "weights_only" in inspect.signature(torch.load).parameters


class _TensorsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module == "torch" and name.endswith("Storage")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError("weights_only: global %s.%s is not allowed in a weights file" % (module, name))


class _TensorsOnlyPickle:
    """What torch.load takes as pickle_module: its Unpickler and load()."""

    Unpickler = _TensorsOnlyUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _TensorsOnlyUnpickler(file, **kwargs).load()


def load_tensors(file: Any, map_location: Any = "cpu") -> Any:
    """torch.load(file) of tensors and plain containers only; pickle.UnpicklingError for anything else."""
    if HAS_WEIGHTS_ONLY:
        return torch.load(file, map_location=map_location, weights_only=True)
    return torch.load(file, map_location=map_location, pickle_module=_TensorsOnlyPickle)


