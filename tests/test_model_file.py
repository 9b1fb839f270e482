"""An Ultralytics checkpoint's depth read without PyTorch: what the CLI and preflight check freeze against."""

import subprocess
import sys

import pytest

from yolo_kfp.infra.model_file import checkpoint_layers


def test_layers_match_what_ultralytics_loads(base_checkpoint, trained_weights):
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    for path in (base_checkpoint, trained_weights[0]):
        assert checkpoint_layers(path) == len(YOLO(path).model.model) == 25


def test_reading_a_checkpoint_imports_neither_torch_nor_ultralytics(base_checkpoint):
    code = ("import sys; from yolo_kfp.infra.model_file import checkpoint_layers; "
            f"print(checkpoint_layers({base_checkpoint!r}), 'torch' in sys.modules, 'ultralytics' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["25", "False", "False"]


@pytest.mark.parametrize("content, message", [
    (b"", "is not a readable PyTorch checkpoint"),
    (b"not a zip at all", "is not a readable PyTorch checkpoint"),
])
def test_what_is_not_a_checkpoint_is_named(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        checkpoint_layers(str(path))


def test_a_checkpoint_without_a_model_is_named(tmp_path):
    import torch

    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="holds no model with layers"):
        checkpoint_layers(str(path))
