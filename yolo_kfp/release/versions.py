"""A published version's name: sortable by time, unique per run (``20261126-083000-1a2b3c4d``).

S3's ``latest`` and the image's ``latest`` tag both move only to a newer one; a name not of this form, or stamped
in the future, was not written by a publish and is taken as older than any.
"""

import calendar
import re
import time

VERSION = re.compile(r"(\d{8}-\d{6})(-[0-9A-Za-z_-]{1,8})?")
CLOCK_SKEW_SECONDS = 86400  # a version stamped later than this after now was not written by a publish


def new_version(run_id: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{run_id[:8]}" if run_id else stamp


def version_stamp(version: object) -> int | None:
    """When ``version`` was published (seconds since the epoch), or None where it is not a version a publish
    writes (damaged, planted, or stamped in the future)."""
    match = VERSION.fullmatch(version) if isinstance(version, str) else None
    if not match:
        return None
    stamp = calendar.timegm(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))
    return stamp if stamp <= time.time() + CLOCK_SKEW_SECONDS else None
