"""The ``yolo-kfp`` command of the environment the tests run in, for tests that run it as a user would."""

import os
import sys

CLI = os.path.join(os.path.dirname(sys.executable), "yolo-kfp")
# How soon a new CLI process must have refused a value or given up on a silent server: starting Python and
# importing the CLI alone takes up to ~10 s on a 2-core machine running the other test processes beside it.
REFUSED_WITHIN = 30


def commands_naming(text: str) -> list[str]:
    """The command lines of this machine's processes that hold ``text`` (a run's folder): what a run left behind."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(f"{entry}: {command[:200]}")
    return found
