"""Dataset artifacts as tar shards, and extraction that never writes outside its target."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from components.core import packing
from components.core.packing import extract, materialized, pack_in_place, shards


@pytest.fixture(params=["gnu tar", "python tarfile"], autouse=True)
def tar_implementation(request, monkeypatch):
    """Every test runs with GNU tar and with Python's tarfile (images without GNU tar)."""
    if request.param == "gnu tar":
        assert packing.gnu_tar(), "GNU tar is on this machine"
    else:
        monkeypatch.setattr(packing, "gnu_tar", lambda: None)
    return request.param


def test_pack_and_materialize_round_trip(tmp_path):
    artifact = tmp_path / "artifact"
    for split in ("train", "val"):
        (artifact / "images" / split).mkdir(parents=True)
        for i in range(5):
            (artifact / "images" / split / f"{i}.jpg").write_bytes(os.urandom(300))
    (artifact / "dataset.yaml").write_text("names: [Car]\n")
    originals = {p.relative_to(artifact): p.read_bytes() for p in artifact.rglob("*") if p.is_file()}
    written = pack_in_place(str(artifact), ("images",), shard_bytes=1000)
    assert len(written) == 3 and shards(str(artifact)) == written  # 10 files of 300 bytes, ~1000 per shard
    assert not (artifact / "images").exists()
    with materialized(str(artifact)) as folder:
        restored = {p.relative_to(folder): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
    assert restored == originals


def test_a_plain_folder_is_used_as_it_is(tmp_path):
    with materialized(str(tmp_path)) as folder:
        assert folder == str(tmp_path)


def _archive(path, *members):
    with tarfile.open(path, "w") as tar:
        for member in members:
            data = b"x" if member.isfile() else b""
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data else None)
    return str(path)


def _member(name, kind=tarfile.REGTYPE, link=""):
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, link
    return member


@pytest.mark.parametrize("member, reason", [
    (_member("/etc/evil"), "escapes"),
    (_member("../evil"), "escapes"),
    (_member("images/../../evil"), "escapes"),
    (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "outside"),
    (_member("images/link", tarfile.SYMTYPE, "../../outside"), "outside"),
    (_member("hard", tarfile.LNKTYPE, "../outside"), "outside"),
    (_member("dev", tarfile.CHRTYPE), "not a file"),
])
def test_extraction_refuses_members_that_leave_the_target(tmp_path, member, reason):
    archive = _archive(tmp_path / "bad.tar", _member("images/ok.jpg"), member)
    target = tmp_path / "target"
    with pytest.raises(ValueError, match=reason):
        extract(archive, str(target))
    assert not (tmp_path / "evil").exists()
    assert not target.exists() or not any(target.iterdir()), "nothing is extracted from a refused archive"


def test_links_inside_the_target_are_fine(tmp_path):
    archive = _archive(tmp_path / "ok.tar", _member("images/a.jpg"), _member("images/b.jpg", tarfile.SYMTYPE, "a.jpg"))
    extract(archive, str(tmp_path / "target"))
    assert (tmp_path / "target" / "images" / "b.jpg").read_bytes() == b"x"
