"""Reads an Ultralytics checkpoint's structure without PyTorch, Ultralytics or running its pickle's code.

A ``.pt`` file is a zip holding ``data.pkl``: the pickle is read with every class replaced by an inert
stand-in and every tensor left out, which is enough to count the model's layers (``freeze`` must stay
below) in the CLI and in the preflight step, whose image has no PyTorch, in well under a second.

The same reading names every global the pickle would call: a checkpoint that names one outside what
Ultralytics and PyTorch write (``posix.system``, ``builtins.eval``, ...) is refused here, before any
step fetches it onto a GPU node. The train image then loads checkpoints with a weights-only
unpickler (``yolo_kfp.model.safe_checkpoint``), which is the check that counts.
"""

import pickle
import re
import zipfile

# Rebuilt as themselves: the containers a checkpoint's structure is made of. Everything else is a stand-in.
REAL = {("collections", "OrderedDict"), ("copyreg", "_reconstructor"), ("builtins", "object"), ("builtins", "set"),
        ("builtins", "frozenset"), ("builtins", "slice")}


# The globals an Ultralytics checkpoint's pickle names: its model's classes, PyTorch's layers and tensor
# rebuilders, and a few containers. A pre-filter: PyTorch's weights-only unpickler decides in the train image.
CHECKPOINT_GLOBALS = re.compile(r"""(
    ultralytics\.nn\.(modules(\.\w+)?|tasks)\.\w+ | ultralytics\.utils\.IterableSimpleNamespace
  | torch\.nn\.modules(\.\w+)*\.\w+ | torch\._utils\._rebuild_\w+ | torch\.\w+Storage | torch\.(Size|device|dtype)
  | torch\.(float|half|bfloat|int|uint|long|bool)\w* | (__builtin__|builtins)\.(set|frozenset|slice)
  | collections\.OrderedDict | _codecs\.encode
)""", re.VERBOSE)


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
        self.foreign: set[str] = set()  # globals no Ultralytics checkpoint names

    def find_class(self, module, name):
        if not CHECKPOINT_GLOBALS.fullmatch(f"{module}.{name}"):
            self.foreign.add(f"{module}.{name}")
        if (module, name) in REAL:
            return super().find_class(module, name)
        return self._classes.setdefault((module, name), type(name, (_StandIn,), {"__module__": module}))

    def persistent_load(self, pid):
        return None  # a tensor's storage: not needed for the structure


def read_checkpoint(path: str) -> dict:
    """The checkpoint's top-level dict, tensors left out; ValueError if it is not a readable checkpoint or
    names a global that no Ultralytics checkpoint does (loading it elsewhere could run code)."""
    try:
        with zipfile.ZipFile(path) as archive:
            (pickled,) = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            with archive.open(pickled) as f:
                unpickler = _StructureUnpickler(f)
                checkpoint = unpickler.load()
    except (zipfile.BadZipFile, ValueError, EOFError, pickle.UnpicklingError, AttributeError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error or type(error).__name__})") from None
    if unpickler.foreign:
        raise ValueError(f"{path} names {', '.join(sorted(unpickler.foreign))}, which no Ultralytics checkpoint "
                         "does (loading it could run code): not used. Use a checkpoint that Ultralytics wrote")
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
