"""What a command writes: a step's JSON result alone on stdout, the libraries' output on stderr, and output
folders checked before any work."""

import contextlib
import json
import os
import sys


def print_json(value) -> None:
    print(json.dumps(value, indent=2))


def library_output_to_stderr():
    """Ultralytics logs and draws progress bars on stdout, which a step keeps for its JSON result alone.
    Its log handler takes the stdout of when it is first imported: inside a step's core, so here too."""
    return contextlib.redirect_stdout(sys.stderr)


def refuse_files_as_output_folders(args) -> None:
    """An output folder (``--output-dir``, predict's ``--save``) must be named, be a folder or not yet exist, and
    not lie under a file: told before any work, not when the first output is written."""
    for flag in ("output_dir", "save"):
        folder = getattr(args, flag, None)
        if folder is None:
            continue
        if not folder.strip():  # '' would be the current folder
            raise ValueError(f"--{flag.replace('_', '-')} is empty: name a folder (it is made if missing)")
        existing = os.path.abspath(folder)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            where = "is a file" if existing == os.path.abspath(folder) else f"lies under the file {existing}"
            raise ValueError(f"--{flag.replace('_', '-')} {folder} {where}, not a folder: give a folder (it is made "
                             "if missing)")


# Input options and what each must name: checked before any work, naming the option.
INPUT_FOLDERS = {"data": "a convert output dir (holds dataset.yaml)", "raw": "a download step's output dir"}
INPUT_FILES = {"ca_bundle": "a PEM file of CA certificates"}


def refuse_missing_inputs(args) -> None:
    """An input folder or file that is not there is named with its option, not as an OS error later."""
    for inputs, is_there in ((INPUT_FOLDERS, os.path.isdir), (INPUT_FILES, os.path.isfile)):
        for name, what in inputs.items():
            path = getattr(args, name, None)
            if path and not is_there(path):
                raise ValueError(f"--{name.replace('_', '-')} {path} is not there: give {what}")
