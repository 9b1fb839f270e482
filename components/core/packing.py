"""Image datasets travel between steps as a few tar shards, not one S3 object per file.

KFP uploads an artifact folder object by object; for thousands of small images the per-object cost
dominates (see ``bench/artifact_transfer.py``), so the download and convert steps pack their images
into shards and the steps after them unpack. Extraction refuses any member that would land outside
its target: absolute paths, ``..``, and links pointing out (checked here, before anything is written).
GNU tar does the packing and unpacking where the image has it (two to three times faster than Python's
``tarfile`` per file); Python's ``tarfile`` does it elsewhere.
"""

import contextlib
import functools
import os
import shutil
import subprocess
import tarfile
import tempfile

SHARD_PREFIX = "shard-"
SHARD_BYTES = 512 << 20


def link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # same file system: no copy
    except OSError:
        shutil.copyfile(source, target)


def shards(artifact_dir: str) -> list[str]:
    return sorted(os.path.join(artifact_dir, n) for n in os.listdir(artifact_dir)
                  if n.startswith(SHARD_PREFIX) and n.endswith(".tar"))


@functools.cache
def gnu_tar() -> str | None:
    """The path of GNU tar, or None where there is none (or only another tar)."""
    path = shutil.which("tar")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return path if "GNU tar" in version else None


def _write_shard(archive: str, root: str, names: list[str]) -> None:
    tar = gnu_tar()
    if tar:
        listing = archive + ".files"
        with open(listing, "w") as f:
            f.write("\0".join(names))
        subprocess.run([tar, "--create", "--format=gnu", "--file", archive, "--directory", root, "--null",
                        "--no-recursion", "--files-from", listing], check=True)
        os.remove(listing)
        return
    # GNU headers: long names without the PAX records Python writes by default (a quarter faster)
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as out:
        for name in names:
            out.add(os.path.join(root, name), arcname=name, recursive=False)


def pack_in_place(artifact_dir: str, folders: tuple[str, ...], shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Moves the files under ``artifact_dir/<folder>`` into ``shard-NNNNN.tar`` files of about ``shard_bytes``."""
    names = sorted(os.path.relpath(os.path.join(root, f), artifact_dir) for folder in folders
                   for root, _, files in os.walk(os.path.join(artifact_dir, folder)) for f in files)
    groups, size = [], 0
    for name in names:
        if not groups or size >= shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += os.path.getsize(os.path.join(artifact_dir, name))
    first = len(shards(artifact_dir))  # after the shards already there
    written = [os.path.join(artifact_dir, f"{SHARD_PREFIX}{first + i:05d}.tar") for i in range(len(groups))]
    for archive, group in zip(written, groups):
        _write_shard(archive, artifact_dir, group)
    for folder in folders:
        shutil.rmtree(os.path.join(artifact_dir, folder), ignore_errors=True)
    return written


def packed_files(artifact_dir: str) -> list[str]:
    """The paths of the files held in the artifact's shards (read from their headers, nothing extracted)."""
    names = []
    for archive in shards(artifact_dir):
        with tarfile.open(archive) as tar:
            names += [member.name for member in tar.getmembers() if member.isfile()]
    return names


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
        tar_path = gnu_tar()
        if tar_path:
            os.makedirs(target, exist_ok=True)
            subprocess.run([tar_path, "--extract", "--file", archive, "--directory", target, "--no-same-owner",
                            "--no-same-permissions"], check=True)
            return
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
