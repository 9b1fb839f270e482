"""Reads an Ultralytics checkpoint's structure without PyTorch, Ultralytics or running its pickle's code.

A ``.pt`` file is a zip holding ``data.pkl``: the pickle is read with every class replaced by an inert
stand-in and every tensor left out, which is enough to count the model's layers (``freeze`` must stay
below) in the CLI and in the preflight step, whose image has no PyTorch, in well under a second.
"""

import pickle
import zipfile

# Rebuilt as themselves: the containers a checkpoint's structure is made of. Everything else is a stand-in.
REAL = {("collections", "OrderedDict"), ("copyreg", "_reconstructor"), ("builtins", "object"), ("builtins", "set"),
        ("builtins", "frozenset"), ("builtins", "slice")}


class _StandIn:
    """Any class of the pickle: keeps the state it is given, calls to it make more stand-ins."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _StructureUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module, name):
        if (module, name) in REAL:
            return super().find_class(module, name)
        return self._classes.setdefault((module, name), type(name, (_StandIn,), {"__module__": module}))

    def persistent_load(self, pid):
        return None  # a tensor's storage: not needed for the structure


def read_checkpoint(path: str) -> dict:
    """The checkpoint's top-level dict, tensors left out; ValueError if it is not a readable checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            (pickled,) = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            with archive.open(pickled) as f:
                checkpoint = _StructureUnpickler(f).load()
    except (zipfile.BadZipFile, ValueError, EOFError, pickle.UnpicklingError, AttributeError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error or type(error).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not an Ultralytics checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def checkpoint_layers(path: str) -> int:
    """The number of layers of the model in an Ultralytics checkpoint (``len(model.model)``)."""
    checkpoint = read_checkpoint(path)
    model = checkpoint.get("ema") or checkpoint.get("model")
    layers = getattr(model, "__dict__", {}).get("_modules", {}).get("model")
    modules = getattr(layers, "__dict__", {}).get("_modules")
    if not modules:
        raise ValueError(f"{path} is not an Ultralytics checkpoint: it holds no model with layers")
    return len(modules)
