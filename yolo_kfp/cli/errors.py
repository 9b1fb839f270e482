"""How a failure becomes the command's last line: ``yolo-kfp: error: ...`` on stderr and an exit code, without
a traceback, for failures that are the user's to fix or the environment's (a bad value, a missing file, a server's
refusal, Ctrl-C). Any other exception is a bug and goes up with its traceback. ``--debug`` or
``YOLO_KFP_DEBUG=1`` prints the traceback a line replaces too, for a report or a look into a library's failure."""

import os
import sys
import traceback

from kfp_server_api.exceptions import ApiException

from yolo_kfp.infra.storage import StorageError

DEBUG_VARIABLE = "YOLO_KFP_DEBUG"
INTERRUPTED = ("interrupted; nothing of the run is left running (run again into the same --output-dir to resume "
               "training)")


def _server_answer(error) -> str:  # an ApiException
    return f"the pipeline server answered {error.status} {error.reason}: {(error.body or '').strip()[:500]}"


# Each kind of failure, how it is told and its exit code; the first that matches counts.
FAILURES = (
    (KeyboardInterrupt, lambda error: INTERRUPTED, 130),
    ((ValueError, FileNotFoundError, StorageError), str, 2),
    (ApiException, _server_answer, 1),
    (RuntimeError, str, 1),  # a failed local run (LocalRunFailed), an embedded server that did not start
    (OSError, lambda error: f"{type(error).__name__}: {error}", 1),  # PermissionError, TimeoutError, ...
)


def fail(message: str, code: int) -> int:
    """The command's last line, on stderr, on one line."""
    print(f"yolo-kfp: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return code


def debug_wanted(args) -> bool:
    """``--debug``, or ``YOLO_KFP_DEBUG`` set to anything but empty or 0."""
    return args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def told_in_one_line(command, *, debug: bool) -> int:
    """``command()``'s exit code; a failure of a kind in ``FAILURES`` told in one line instead of raised, after
    its traceback with ``debug``."""
    try:
        return command()
    except (KeyboardInterrupt, Exception) as error:
        told = next(((tell, code) for kinds, tell, code in FAILURES if isinstance(error, kinds)), None)
        if told is None:
            raise
        if debug:
            traceback.print_exception(error)
        tell, code = told
        return fail(tell(error), code)
