"""Whether an image file is whole and of a size that may be decoded: the checks the download step (reusing what
an interrupted run left), the convert step (dropping what cannot be read) and ``predict`` share."""

import contextlib
import os

# Complete files start with their format's signature and end with its end marker; files that do
# not are decoded in full, so only those pay for a decode (20,000 decodes take ~10 s on 2 cores).
COMPLETE_FILE_MARKERS = {".jpg": (b"\xff\xd8\xff", b"\xff\xd9"), ".jpeg": (b"\xff\xd8\xff", b"\xff\xd9"),
                         ".png": (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82")}


# An image's pixels, read from its header before anything decodes it: 8000 x 8000 is ~190 MB decoded, Open
# Images' largest are far below; a few KB of PNG can claim 20000 x 20000 (1.2 GB decoded).
MAX_PIXELS = 64_000_000


@contextlib.contextmanager
def _header_only():
    """PIL refuses to open an image it deems a bomb before telling its size: let it tell, decode nothing."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield Image
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def too_many_pixels(path: str) -> str | None:
    """What is wrong with an image whose header (PNG, JPEG, WebP, ...) claims more than ``MAX_PIXELS``; None for
    one that does not, or whose header cannot be read (``readable`` tells)."""
    with _header_only() as Image:
        try:
            with Image.open(path) as image:  # reads the header, decodes nothing
                width, height = image.size
        except Exception:  # not an image PIL knows: readable() says so
            return None
    if width * height <= MAX_PIXELS:
        return None
    return (f"{path} is {width} x {height} pixels, more than {MAX_PIXELS // 1_000_000} million: scale it down "
            "first (the model sees it at imgsz anyway)")


def _has_complete_markers(path: str) -> bool:
    markers = COMPLETE_FILE_MARKERS.get(os.path.splitext(path)[1].lower())
    if markers is None:
        return False
    start, end = markers
    fd = os.open(path, os.O_RDONLY)  # unbuffered: the convert step checks every image, a few bytes of each
    try:
        size = os.fstat(fd).st_size
        return (size >= len(start) + len(end) and os.pread(fd, len(start), 0) == start
                and os.pread(fd, len(end), size - len(end)) == end)
    finally:
        os.close(fd)


def readable(path: str) -> bool:
    """Whether an image is complete and may be decoded: zero-byte, corrupt and truncated files are not, nor one
    over ``MAX_PIXELS``.

    A file with its format's start and end markers counts as complete (Ultralytics checks the same
    end marker); any other file must decode in full with PIL.
    """
    from PIL import Image

    try:
        if too_many_pixels(path):
            return False
        if _has_complete_markers(path):
            return True
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # PIL raises many kinds; once Ultralytics patches Image.open, even ImportError
        return False
