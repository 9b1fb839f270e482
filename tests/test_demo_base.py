"""The demo's base checkpoint: the shipped file when it is the one its hash names, else one trained here."""

import filecmp
import logging

import pytest

from yolo_kfp.local import demo_base


def test_the_shipped_checkpoint_is_the_one_its_hash_names():
    assert demo_base.SHIPPED_SHA256 and demo_base.sha256_of(demo_base.SHIPPED) == demo_base.SHIPPED_SHA256


def test_the_demo_starts_from_the_shipped_checkpoint_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_base, "train_base_checkpoint", lambda *args: pytest.fail("trained a base"))
    path = demo_base.base_checkpoint(str(tmp_path / "work"))
    assert filecmp.cmp(path, demo_base.SHIPPED, shallow=False)
    assert demo_base.base_checkpoint(str(tmp_path / "work")) == path  # an earlier demo's is reused


def test_a_shipped_file_that_is_not_the_one_named_is_not_used(tmp_path, monkeypatch, caplog):
    planted = tmp_path / "demo-base.pt"
    planted.write_bytes(b"not the project's checkpoint")
    monkeypatch.setattr(demo_base, "SHIPPED", str(planted))
    trained = []
    monkeypatch.setattr(demo_base, "train_base_checkpoint",
                        lambda path, epochs, images: trained.append((epochs, images)) or path)
    with caplog.at_level(logging.WARNING):
        demo_base.base_checkpoint(str(tmp_path / "work"))
    assert trained == [(demo_base.FALLBACK_EPOCHS, 100)]
    assert "is not the one made for this release: training a weaker one here" in caplog.text


def test_the_recipe_trains_a_checkpoint_of_the_base_classes(tmp_path):
    """``python -m yolo_kfp.local.demo_base``'s recipe, for one epoch on a few images."""
    from yolo_kfp.infra.model_file import read_checkpoint

    path = demo_base.train_base_checkpoint(str(tmp_path / "base.pt"), 1, 4)
    names = vars(read_checkpoint(path)["model"])["names"]
    assert list(names.values()) == demo_base.BASE_CLASSES
