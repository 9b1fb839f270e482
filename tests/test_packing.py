"""Dataset artifacts as tar shards, and extraction that never writes outside its target."""

import errno
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from yolo_kfp.infra import packing
from yolo_kfp.infra.packing import extract, materialized, pack_in_place, shards


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


def test_genuine_shards_round_trip_awkward_names_and_hard_links(tmp_path):
    artifact = tmp_path / "artifact"
    (artifact / "images" / "train").mkdir(parents=True)
    names = ["-rf.jpg", "*.jpg", "a\\nb.jpg", "new\nline.jpg", "sp ace.jpg", os.fsdecode(b"\xff.jpg")]
    for name in names:
        (artifact / "images" / "train" / name).write_bytes(name.encode("utf-8", "surrogateescape"))
    os.link(artifact / "images" / "train" / "-rf.jpg", artifact / "images" / "train" / "same-inode.jpg")
    originals = {p.relative_to(artifact): p.read_bytes() for p in artifact.rglob("*") if p.is_file()}
    pack_in_place(str(artifact), ("images",))
    with tarfile.open(shards(str(artifact))[0]) as tar:
        assert all(member.isfile() for member in tar.getmembers()), "the packer writes no link member"
    with materialized(str(artifact)) as folder:
        restored = {p.relative_to(folder): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
    assert restored == originals


@pytest.mark.parametrize("link", ["images/train/secret.jpg", "images/val"])
def test_the_packer_refuses_links(tmp_path, link):
    artifact = tmp_path / "artifact"
    (artifact / "images" / "train").mkdir(parents=True)
    (artifact / "images" / "train" / "a.jpg").write_bytes(b"a")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.jpg").write_bytes(b"secret")
    (artifact / link).symlink_to(tmp_path / "secret" / ("key.jpg" if link.endswith(".jpg") else ""))
    with pytest.raises(ValueError, match="symbolic link"):
        pack_in_place(str(artifact), ("images",))
    assert not shards(str(artifact)) and (artifact / "images" / "train" / "a.jpg").exists()


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


def _hidden_tail(path):
    """A file that Python's parser reads up to a bad header, and GNU tar reads past it: a chain of links."""
    _archive(path.with_suffix(".head"), _member("images/ok.jpg"))
    _archive(path.with_suffix(".tail"), *(_member(*spec) for spec in CHAIN))
    path.write_bytes(path.with_suffix(".head").read_bytes()[:1024] + b"\xff" * 512
                     + path.with_suffix(".tail").read_bytes())
    return str(path)


# Members as (name, type, link name). The target is <tmp>/x/y/target: the chain's last link resolves to
# <tmp>/secret.txt once both exist; "SENTINEL" stands for the sentinel folder beside the target.
CHAIN = (("d1/d2/d3/l", tarfile.SYMTYPE, "../../.."),
         ("images/train/leak.jpg", tarfile.SYMTYPE, "../../d1/d2/d3/l/../../../secret.txt"))
HOSTILE = {
    "symlink chain": (CHAIN, "symbolic link"),
    "hard link to a symlink": ((("images/l", tarfile.SYMTYPE, "ok.jpg"), ("images/h", tarfile.LNKTYPE, "images/l")),
                               "link"),
    "hard link out": ((("images/h", tarfile.LNKTYPE, "../../../secret.txt"),), "hard link"),
    "folder replaced by a symlink": ((("images", tarfile.SYMTYPE, "../../../sentinel"), ("images/b.jpg",)),
                                     "symbolic link"),
    "absolute path": ((("SENTINEL/evil",),), "absolute"),
    "dot-dot path": ((("images/../../../../sentinel/evil",),), "'..'"),
    "not normalized": ((("images//b.jpg",),), "normalized"),
    "dot-slash": ((("./images/b.jpg",),), "normalized"),
    "character device": ((("images/dev", tarfile.CHRTYPE),), "character device"),
    "fifo": ((("images/pipe", tarfile.FIFOTYPE),), "fifo"),
    "contiguous file": ((("images/c.jpg", tarfile.CONTTYPE),), "tar type"),
    "duplicate names": ((("images/b.jpg",), ("images/b.jpg",)), "twice"),
    "a file that is a folder": ((("images/b/c.jpg",), ("images/b",)), "another member's folder"),
}


@pytest.fixture
def outside(tmp_path):
    """A secret file and an empty sentinel folder beside the target; checked untouched after each test."""
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (tmp_path / "sentinel").mkdir()
    yield tmp_path / "x" / "y" / "target"
    assert (tmp_path / "secret.txt").read_bytes() == b"secret"
    assert not any((tmp_path / "sentinel").iterdir()), "nothing is written beside the target"


@pytest.mark.parametrize("case", HOSTILE)
def test_extraction_refuses_hostile_archives_whole(tmp_path, outside, case):
    members, reason = HOSTILE[case]
    members = [_member(name.replace("SENTINEL", str(tmp_path / "sentinel")), *rest) for name, *rest in members]
    archive = _archive(tmp_path / "bad.tar", _member("images/ok.jpg"), *members)
    with pytest.raises(ValueError, match=f"{archive}: member .*{reason}"):
        extract(archive, str(outside))
    assert not outside.exists() or not any(outside.iterdir()), "nothing is extracted from a refused archive"


def test_extraction_refuses_what_only_some_tar_readers_read(tmp_path, outside):
    with pytest.raises(ValueError, match="data after its end"):
        extract(_hidden_tail(tmp_path / "bad.tar"), str(outside))
    assert not outside.exists()


def test_extraction_refuses_a_sparse_file(tmp_path, outside):
    (tmp_path / "images").mkdir()
    with open(tmp_path / "images" / "s.jpg", "wb") as f:
        f.truncate(1 << 20)
    subprocess.run(["tar", "--create", "--sparse", "--format=posix", "--file", tmp_path / "bad.tar", "--directory",
                    tmp_path, "images/s.jpg"], check=True)  # a pax-format sparse member has the regular type
    with pytest.raises(ValueError, match="member 'images/s.jpg' is a sparse file"):
        extract(str(tmp_path / "bad.tar"), str(outside))
    assert not outside.exists()


def test_extraction_refuses_a_compressed_archive(tmp_path, outside):
    with tarfile.open(tmp_path / "bad.tar", "w:gz") as tar:
        tar.addfile(_member("images/ok.jpg"))
    with pytest.raises(ValueError, match="not an uncompressed tar"):
        extract(str(tmp_path / "bad.tar"), str(outside))


@pytest.mark.parametrize("member, reason", [
    ("labels/x.txt", "would go through .*labels, already there and not a folder"),
    ("dataset.yaml", "would replace .*dataset.yaml, already there"),
])
def test_a_shard_never_writes_through_the_artifacts_other_files(tmp_path, member, reason):
    artifact = tmp_path / "artifact"
    (artifact / "labels").mkdir(parents=True)
    (artifact / "dataset.yaml").write_text("names: [Car]\n")
    _archive(artifact / "shard-00000.tar", _member("images/ok.jpg"))
    _archive(artifact / "shard-00001.tar", _member(member))
    with pytest.raises(ValueError, match=reason), materialized(str(artifact)):
        pass
    assert (artifact / "dataset.yaml").read_text() == "names: [Car]\n" and not any((artifact / "labels").iterdir())


def test_a_later_shard_cannot_replace_an_earlier_ones_file(tmp_path):
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    _archive(artifact / "shard-00000.tar", _member("images/ok.jpg"))
    _archive(artifact / "shard-00001.tar", _member("images/ok.jpg"))
    with pytest.raises(ValueError, match="shard-00001.tar: member 'images/ok.jpg' would replace"), \
            materialized(str(artifact)):
        pass


def test_folders_are_extracted_into_folders_already_there(tmp_path):
    (tmp_path / "target" / "images").mkdir(parents=True)
    archive = _archive(tmp_path / "ok.tar", _member("images", tarfile.DIRTYPE),
                       _member("images/empty", tarfile.DIRTYPE), _member("images/a.jpg"))
    extract(archive, str(tmp_path / "target"))
    assert (tmp_path / "target" / "images" / "a.jpg").read_bytes() == b"x"
    assert (tmp_path / "target" / "images" / "empty").is_dir()


def raw_header(name: bytes, size: bytes, kind: bytes = b"0", link: bytes = b"") -> bytes:
    """A 512-byte tar header written field by field at the POSIX offsets, its checksum computed: any bytes a
    hostile writer puts in a field, not what ``tarfile`` would write."""
    header = bytearray(512)
    for offset, width, value in ((0, 100, name), (100, 8, b"0000644\0"), (108, 8, b"0000000\0"),
                                 (116, 8, b"0000000\0"), (124, 12, size), (136, 12, b"00000000000\0"),
                                 (156, 1, kind), (157, 100, link), (257, 8, b"ustar  \0")):
        assert len(value) <= width
        header[offset:offset + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def block(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def pax(records: dict[str, str]) -> bytes:
    """A pax extended header (type x) giving the next member these records."""
    body = b""
    for key, value in records.items():
        line = f" {key}={value}\n".encode()
        length = len(line) + len(str(len(line)))
        body += str(length + (len(str(length)) - len(str(len(line))))).encode() + line
    return raw_header(b"././@PaxHeader", b"%011o\0" % len(body), b"x") + block(body)


def gnu_long_name(name: bytes) -> bytes:
    """GNU's long-name member (type L), naming the member after it."""
    return raw_header(b"././@LongLink", b"%011o\0" % (len(name) + 1), b"L") + block(name + b"\0")


LINK_TO_ENVIRON = raw_header(b"labels/train/a.txt", b"00000000000\0", b"2", b"/proc/self/environ")
LONG = b"images/" + b"n" * 200 + b".jpg"
DEEP = b"/".join([b"images", *[b"d" * 250] * 20, b"b.jpg"])  # each part fits, the whole path does not
# Archives written byte by byte, each with what the one parser makes of it: the members it extracts (name:
# content), or the reason it refuses the archive. Other tar readers read some of these otherwise (GNU tar
# takes "+0" as a base-64 size of 52 bytes, and so LINK_TO_ENVIRON as a header of its own).
RAW = {
    "size +0": ((raw_header(b"a.txt", b"+0\0"), raw_header(b"labels/train/a.txt", b"00000001000\0"),
                 LINK_TO_ENVIRON), {"a.txt": b"", "labels/train/a.txt": LINK_TO_ENVIRON}),
    "size 0o": ((raw_header(b"images/a.jpg", b"0o1000\0"), LINK_TO_ENVIRON), {"images/a.jpg": LINK_TO_ENVIRON}),
    "size with _": ((raw_header(b"images/a.jpg", b"1_000\0"), LINK_TO_ENVIRON), {"images/a.jpg": LINK_TO_ENVIRON}),
    "pax renames a member": ((pax({"path": "../../../evil.jpg"}), raw_header(b"images/a.jpg", b"00000000001\0"),
                              block(b"x")), "'..'"),
    "pax renames a member to a link": ((pax({"linkpath": "/proc/self/environ"}),
                                        raw_header(b"images/a.jpg", b"00000000000\0", b"2")), "symbolic link"),
    "GNU long name": ((gnu_long_name(LONG), raw_header(LONG[:100], b"00000000001\0"), block(b"y")),
                      {LONG.decode(): b"y"}),
    "GNU sparse member": ((raw_header(b"images/s.jpg", b"00000000000\0", b"S"),), "tar type"),
    "a path longer than the file system takes": ((gnu_long_name(DEEP), raw_header(b"images/b.jpg", b"00000000001\0"),
                                                  block(b"b")), "cannot be written at"),
    "name of 300 characters": ((gnu_long_name(b"images/" + b"a" * 300), raw_header(b"images/a", b"00000000001\0"),
                                block(b"z")), "longer than 255 bytes"),
}


def test_hand_written_headers_are_read_one_way_refused_or_extracted_as_regular_files(tmp_path, outside):
    for case, (blocks, outcome) in RAW.items():
        archive = tmp_path / "raw.tar"
        archive.write_bytes(b"".join(blocks) + b"\0" * 1024)
        target = outside / case.replace(" ", "-")
        if isinstance(outcome, str):
            with pytest.raises(ValueError, match=f"member .*{outcome}") as refused:
                extract(str(archive), str(target))
            assert "\n" not in str(refused.value) and not target.exists(), case
            continue
        extract(str(archive), str(target))
        kinds = {str(p.relative_to(target)): p.lstat().st_mode for p in target.rglob("*")}
        assert all(stat.S_ISREG(mode) or stat.S_ISDIR(mode) for mode in kinds.values()), case
        assert {name: (target / name).read_bytes() for name in kinds if stat.S_ISREG(kinds[name])} == outcome, case


def test_a_failure_half_way_leaves_nothing_and_is_one_line(tmp_path, outside, monkeypatch):
    archive = _archive(tmp_path / "ok.tar", _member("images/a.jpg"), _member("labels/b.txt"))
    copy = packing.shutil.copyfileobj

    def disk_full_at_the_second_file(source, out, length=0):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(out.name)
        copy(source, out, length)

    written: list = []
    monkeypatch.setattr(packing.shutil, "copyfileobj", disk_full_at_the_second_file)
    with pytest.raises(ValueError, match=r"stopped .* No space left on device\); nothing of it was kept") as refused:
        extract(archive, str(outside))
    assert written and "\n" not in str(refused.value) and not outside.exists()


def test_a_cut_archive_is_refused_in_one_line(tmp_path, outside):
    archive = tmp_path / "cut.tar"
    archive.write_bytes(raw_header(b"images/a.jpg", b"00000010000\0") + b"a" * 100)  # 4096 bytes said, 100 there
    with pytest.raises(ValueError, match="is damaged") as refused:
        extract(str(archive), str(outside))
    assert "\n" not in str(refused.value) and not outside.exists()
