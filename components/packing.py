"""Image datasets travel between steps as a few tar shards, not one S3 object per file.

KFP uploads an artifact folder object by object; for thousands of small images the per-object cost
dominates (see ``bench/artifact_transfer.py``), so the download and convert steps pack their images
into shards and the steps after them unpack. Extraction refuses any member that would land outside
its target: absolute paths, ``..``, and links pointing out.
"""

import contextlib
import os
import shutil
import tarfile
import tempfile

SHARD_PREFIX = "shard-"
SHARD_BYTES = 512 << 20


def shards(artifact_dir: str) -> list[str]:
    return sorted(os.path.join(artifact_dir, n) for n in os.listdir(artifact_dir)
                  if n.startswith(SHARD_PREFIX) and n.endswith(".tar"))


def pack_in_place(artifact_dir: str, folders: tuple[str, ...], shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Moves the files under ``artifact_dir/<folder>`` into ``shard-NNNNN.tar`` files of about ``shard_bytes``."""
    names = sorted(os.path.relpath(os.path.join(root, f), artifact_dir) for folder in folders
                   for root, _, files in os.walk(os.path.join(artifact_dir, folder)) for f in files)
    written, tar, size = [], None, 0
    for name in names:
        path = os.path.join(artifact_dir, name)
        if tar is None or size >= shard_bytes:
            if tar:
                tar.close()
            written.append(os.path.join(artifact_dir, f"{SHARD_PREFIX}{len(written):05d}.tar"))
            tar, size = tarfile.open(written[-1], "w"), 0
        tar.add(path, arcname=name, recursive=False)
        size += os.path.getsize(path)
    if tar:
        tar.close()
    for folder in folders:
        shutil.rmtree(os.path.join(artifact_dir, folder), ignore_errors=True)
    return written


def check_member(member: tarfile.TarInfo, target: str) -> None:
    """Refuses a member whose path or link target leaves ``target``."""
    root = os.path.realpath(target)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    if os.path.isabs(member.name) or ".." in member.name.replace("\\", "/").split("/"):
        raise ValueError(f"archive member {member.name!r} escapes {target}")
    if not inside(os.path.join(root, member.name)):
        raise ValueError(f"archive member {member.name!r} escapes {target}")
    if member.issym() and not inside(os.path.join(root, os.path.dirname(member.name), member.linkname)):
        raise ValueError(f"archive member {member.name!r} links to {member.linkname!r}, outside {target}")
    if member.islnk() and not inside(os.path.join(root, member.linkname)):
        raise ValueError(f"archive member {member.name!r} links to {member.linkname!r}, outside {target}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ValueError(f"archive member {member.name!r} is not a file, folder or link")


def extract(archive: str, target: str) -> None:
    """Extracts ``archive`` into ``target`` after checking every member."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            check_member(member, target)
        # Python's own "data" filter (3.11.4+) as a second guard where the interpreter has it.
        guard = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=members, **guard)


@contextlib.contextmanager
def materialized(artifact_dir: str):
    """Yields a plain folder with the artifact's content: its shards unpacked beside its other files.

    A folder without shards (the output of a ``yolo-kfp step``) is yielded as it is.
    """
    packed = shards(artifact_dir)
    if not packed:
        yield artifact_dir
        return
    with tempfile.TemporaryDirectory(prefix="artifact-") as work:
        for name in os.listdir(artifact_dir):
            path = os.path.join(artifact_dir, name)
            if path not in packed:
                os.symlink(path, os.path.join(work, name))
        for archive in packed:
            extract(archive, work)
        yield work
