"""``yolo-kfp``: the command over every room of the project.

``parsers`` and ``step_parsers`` declare the commands and their options (a run parameter's type, default and
help come from the parameter table, so the CLI, the compiled YAML and the notebook cannot disagree);
``cluster_commands``, ``local_run``, ``step_commands`` and ``predict_command`` do the work, each importing the
room it needs inside the command's function; ``errors`` turns a failure into the command's last line.
"""

import logging
import signal

from yolo_kfp.cli.errors import debug_wanted, told_in_one_line
from yolo_kfp.cli.output import refuse_files_as_output_folders, refuse_missing_inputs
from yolo_kfp.cli.parsers import build_parser

__all__ = ["build_parser", "main"]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exited:  # --help and --version exit 0 as argparse does; a bad option is told in one line
        if exited.code == 2:
            return 2
        raise
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: stop what was started, then exit
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return told_in_one_line(lambda: _run(args), debug=debug_wanted(args))


def _run(args) -> int:
    refuse_files_as_output_folders(args)
    refuse_missing_inputs(args)
    return args.func(args) or 0
