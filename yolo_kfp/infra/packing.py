"""Image datasets travel between steps as a few tar shards, not one S3 object per file.

KFP uploads an artifact folder object by object; for thousands of small images the per-object cost
dominates (see ``bench/artifact_transfer.py``), so the download and convert steps pack their images
into shards and the steps after them unpack. A shard holds only what the packer writes: regular files
under relative, normalized, distinct names (folders too, though the packer writes none). Extraction
refuses anything else before it writes a byte: links of any kind, devices, absolute names, ``..``,
duplicates, a file that is also another member's folder, a name that is, or goes through, something
already in the target other than a real folder, a name part longer than a file system takes, and data
past the end that only some tar readers read. One parser decides and extracts: the members Python's
``tarfile`` read and checked are written by this module from those same members (tar readers differ on
headers a hostile archive can craft, so a second reader could see other members than the checked ones).
Each file is created new, never through a link, with no mode or owner from the archive; what one
extraction wrote goes again if it fails half-way. With nothing but regular files and folders written, no
path in the target can resolve outside it. GNU tar packs where the image has it (faster per file).
"""

import contextlib
import functools
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import tempfile

SHARD_PREFIX = "shard-"
SHARD_BYTES = 512 << 20

NAME_PART_BYTES = 255  # what Linux file systems take for one name in a path (NAME_MAX)
_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
          tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a fifo"}


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
    # Hard links (link_or_copy makes them) are stored as the regular files they are, never as link members.
    tar = gnu_tar()
    if tar:
        subprocess.run([tar, "--create", "--format=gnu", "--file", archive, "--directory", root, "--hard-dereference",
                        "--no-recursion", "--null", "--files-from=-"],
                       input=b"\0".join(os.fsencode(name) for name in names), check=True)
        return
    # GNU headers: long names without the PAX records Python writes by default (a quarter faster)
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT, dereference=True) as out:
        for name in names:
            out.add(os.path.join(root, name), arcname=name, recursive=False)


def _regular_files(artifact_dir: str, folders: tuple[str, ...]) -> dict[str, int]:
    """The size of each file under the folders, by path relative to ``artifact_dir``; refuses links.

    A symbolic link is refused, not followed: following it would put whatever it points at (any file
    this step can read) into an artifact others read, and the steps only ever write regular files.
    """
    sizes = {}
    for folder in folders:
        top = os.path.join(artifact_dir, folder)
        entries = [top] if os.path.islink(top) else []  # os.walk would follow it
        for root, dirs, files in os.walk(top):
            entries += [os.path.join(root, name) for name in dirs + files]
        for path in entries:
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                sizes[os.path.relpath(path, artifact_dir)] = info.st_size
            elif not stat.S_ISDIR(info.st_mode):
                kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                raise ValueError(f"cannot pack {path}: {kind}; shards hold regular files and folders only")
    return sizes


def pack_in_place(artifact_dir: str, folders: tuple[str, ...], shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Moves the files under ``artifact_dir/<folder>`` into ``shard-NNNNN.tar`` files of about ``shard_bytes``."""
    sizes = _regular_files(artifact_dir, folders)
    groups, size = [], 0
    for name in sorted(sizes):
        if not groups or size >= shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += sizes[name]
    first = len(shards(artifact_dir))  # after the shards already there
    written = [os.path.join(artifact_dir, f"{SHARD_PREFIX}{first + i:05d}.tar") for i in range(len(groups))]
    for archive, group in zip(written, groups, strict=True):
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


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member, on its own, cannot be in a shard (None when it can)."""
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        return f"is {_KINDS.get(member.type, f'of tar type {member.type!r}')}, not a regular file or folder"
    if member.sparse is not None:  # pax-format sparse files have the regular type; the packer writes none
        return "is a sparse file, not a regular file"
    if member.name.startswith("/"):
        return "is an absolute path"
    if ".." in member.name.split("/"):
        return "goes up with '..'"
    if member.name in ("", ".") or posixpath.normpath(member.name) != member.name:
        return "is not a normalized relative path"
    if any(len(os.fsencode(part)) > NAME_PART_BYTES for part in member.name.split("/")):
        return f"has a name part longer than {NAME_PART_BYTES} bytes"
    return None


def _target_problem(path: str, is_last: bool, is_file: bool) -> str | None:
    """Why a member cannot create or go through ``path``, given what is there already (None when it can)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:  # a path longer than the file system takes, ...
        return f"cannot be written at {path[:200]}...: {error.strerror}"
    if is_last and is_file:
        return f"would replace {path}, already there"
    return None if stat.S_ISDIR(mode) else f"would go through {path}, already there and not a folder"


def _refuse_data_past_the_end(archive: str, tar: tarfile.TarFile) -> None:
    """Where Python's parser stopped (after ``getmembers``) must be the end for GNU tar too.

    Python stops at a bad header; GNU tar skips it and reads on, so anything past it was never checked.
    """
    with open(archive, "rb") as f:
        f.seek(tar.offset)
        if any(chunk.strip(b"\0") for chunk in iter(lambda: f.read(1 << 20), b"")):
            raise ValueError(f"archive {archive} has data after its end that only some tar readers read")


def _refuse_bad_names(archive: str, members: list[tarfile.TarInfo]) -> None:
    names, folders = set(), set()
    for member in members:
        problem = _member_problem(member) or ("is there twice" if member.name in names else None)
        if problem:
            raise ValueError(f"archive {archive}: member {member.name!r} {problem}")
        names.add(member.name)
        parts = member.name.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for member in members:
        if not member.isdir() and member.name in folders:
            raise ValueError(f"archive {archive}: member {member.name!r} is a file and another member's folder")


def _refuse_what_the_target_holds(archive: str, members: list[tarfile.TarInfo], target: str) -> None:
    checked = set()
    for member in members:
        parts = member.name.split("/")
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path in checked:
                continue
            problem = _target_problem(os.path.join(target, path), i == len(parts), member.isfile())
            if problem:
                raise ValueError(f"archive {archive}: member {member.name!r} {problem}")
            checked.add(path)


def extract(archive: str, target: str, selected=None) -> None:
    """Extracts ``archive`` into ``target`` after checking every member; refuses it whole if one fails.
    ``selected`` (a test of a member's name), if given, extracts only the members it passes."""
    try:
        tar = tarfile.open(archive, "r:")  # shards are never compressed; the end check reads raw bytes
    except tarfile.ReadError as error:
        raise ValueError(f"archive {archive} is not an uncompressed tar archive ({error})") from None
    with tar:
        try:
            members = tar.getmembers()
        except tarfile.TarError as error:
            raise ValueError(f"archive {archive} is damaged ({error})") from None
        _refuse_data_past_the_end(archive, tar)
        _refuse_bad_names(archive, members)
        if selected:
            members = [member for member in members if selected(member.name)]
        _refuse_what_the_target_holds(archive, members, target)
        created: list[str] = []
        try:
            _make_folder(target, created)
            for member in members:
                _write_member(tar, member, target, created)
        except (OSError, tarfile.TarError) as error:
            _remove(created)
            raise ValueError(f"archive {archive}: extraction stopped ({error}); nothing of it was kept") from None
        except BaseException:
            _remove(created)
            raise


def _make_folder(path: str, created: list[str]) -> None:
    """``path`` and the folders above it that are missing, each noted in ``created``."""
    if os.path.isdir(path):  # inside the target, the checks found real folders only
        return
    _make_folder(os.path.dirname(path), created)
    os.mkdir(path, 0o755)
    created.append(path)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, created: list[str]) -> None:
    """A checked member, as the checks read it: a folder, or a regular file created new and never through a
    link (O_EXCL, O_NOFOLLOW), its bytes the ones the checked header gives."""
    path = os.path.join(target, member.name)
    if member.isdir():
        _make_folder(path, created)
        return
    _make_folder(os.path.dirname(path), created)
    source = tar.extractfile(member)
    assert source is not None, "a checked member is a regular file or a folder"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    created.append(path)
    with os.fdopen(descriptor, "wb") as out, source:
        shutil.copyfileobj(source, out, 1 << 20)


def _remove(created: list[str]) -> None:
    for path in reversed(created):  # files before the folders that hold them
        with contextlib.suppress(OSError):
            os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


@contextlib.contextmanager
def materialized(artifact_dir: str):
    """Yields a plain folder with the artifact's content: its shards unpacked beside its other files.

    A folder without shards (the output of a ``yolo-kfp step``) is yielded as it is. The other files are
    linked, not copied, so extraction must never write through them (``extract`` refuses such names).
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
