"""The README's first command: the whole pipeline through kfp.local on the offline mirror, and it learns."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


def test_run_local_demo_learns(mongod, tmp_path):
    out = tmp_path / "demo"
    cli = os.path.join(os.path.dirname(sys.executable), "yolo-kfp")
    result = subprocess.run([cli, "run-local", "--demo", "--output-dir", str(out)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "synthetic" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["map50"] >= 0.5, metrics
    assert set(metrics["per_class"]) == {"Bicycle", "Car", "Traffic sign"}
    for name in ("map50", "map50_95", "precision", "recall"):
        assert 0.0 <= metrics[name] <= 1.0
    weights = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert list(weights["model"].names.values()) == ["Bicycle", "Car", "Traffic sign"]
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["steps"]) == {"download", "convert", "train", "evaluate"}
    assert all(seconds > 0 for seconds in timings["steps"].values())
    assert timings["total"] >= sum(timings["steps"].values())
