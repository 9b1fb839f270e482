"""How a failure becomes the command's last line: ``yolo-kfp: error: ...`` on stderr and an exit code, without a
traceback: 2 for what the user gives (a bad value, option or file), 1 for what went wrong doing the work (a
server's refusal, a failed step, an unexpected error, which the line asks to report), 130 for Ctrl-C or SIGTERM.
The line is shortened and shows control characters escaped, so no value can recolour or rewrite the terminal.
``--debug`` or ``YOLO_KFP_DEBUG=1`` prints the traceback a line replaces too."""

import os
import sys
import traceback

from kfp_server_api.exceptions import ApiException

from yolo_kfp.infra.storage import StorageError

DEBUG_VARIABLE = "YOLO_KFP_DEBUG"
INTERRUPTED = ("interrupted; nothing it started is left running (run-local: run again into the same --output-dir "
               "to resume training)")
LONGEST_LINE = 2000  # characters of an error line; a value echoed in it is cut there
UNEXPECTED = "an unexpected failure; run again with --debug for the traceback, and report it"


def _server_answer(error) -> str:  # an ApiException
    return f"the pipeline server answered {error.status} {error.reason}: {(error.body or '').strip()[:500]}"


# Each kind of failure, how it is told and its exit code; the first that matches counts.
FAILURES = (
    (KeyboardInterrupt, lambda error: INTERRUPTED, 130),
    ((ValueError, FileNotFoundError, StorageError), str, 2),
    (ApiException, _server_answer, 1),
    (RuntimeError, str, 1),  # a failed local run (LocalRunFailed), an embedded server that did not start
    (OSError, lambda error: f"{type(error).__name__}: {error}", 1),  # PermissionError, TimeoutError, ...
    (Exception, lambda error: f"{type(error).__name__}: {printable(str(error), 500)} ({UNEXPECTED})", 1),
)


def printable(text: str, longest: int = LONGEST_LINE) -> str:
    """``text`` on one line, control characters escaped (``\x1b``), at most ``longest`` characters."""
    line = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in " ".join(str(text).split()))
    return line if len(line) <= longest else line[:longest - 1] + "…"


def fail(message: str, code: int) -> int:
    """The command's last line, on stderr, on one line."""
    print(f"yolo-kfp: error: {printable(message)}", file=sys.stderr, flush=True)
    return code


def debug_wanted(args) -> bool:
    """``--debug``, or ``YOLO_KFP_DEBUG`` set to anything but empty or 0."""
    return args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def told_in_one_line(command, *, debug: bool) -> int:
    """``command()``'s exit code; a failure told in one line (``FAILURES``) instead of raised, after its traceback
    with ``debug``."""
    try:
        return command()
    except (KeyboardInterrupt, Exception) as error:
        told = next((tell, code) for kinds, tell, code in FAILURES if isinstance(error, kinds))
        if debug:
            traceback.print_exception(error)
        tell, code = told
        return fail(tell(error), code)
