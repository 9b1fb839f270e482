"""The ``yolo-kfp`` command line: each command's options and the function that runs it (``func``)."""

import argparse

from yolo_kfp.cli.cluster_commands import cmd_compile, cmd_schedule, cmd_submit, cmd_upload
from yolo_kfp.cli.errors import printable
from yolo_kfp.cli.local_run import cmd_run_local
from yolo_kfp.cli.options import (
    DefaultsShown,
    add_compile_options,
    add_param_option,
    add_server_options,
    add_server_target,
    add_token_options,
    classes,
    count,
    seconds,
    shown_name,
)
from yolo_kfp.cli.predict_command import cmd_predict
from yolo_kfp.cli.step_parsers import add_step_parsers
from yolo_kfp.params import run_parameters

DESCRIPTION = ("yolo-kfp: compile the pipeline, run it on a pipeline server or here, schedule it,\n"
               "run one step alone, or predict with the exported model.")


class CommandLine(argparse.ArgumentParser):
    """A parser whose errors are one line like every other failure's (``yolo_kfp.cli.errors``), exit code 2;
    each command's parser is one too (argparse makes them of their parent's class)."""

    def error(self, message: str):
        self.exit(2, f"yolo-kfp: error: {printable(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from yolo_kfp import __version__

    parser = CommandLine(prog="yolo-kfp", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="with a failure told in one line, print the traceback "
                                                             "it replaces too (so does YOLO_KFP_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_compile, _add_submit, _add_upload, _add_schedule, _add_run_local, _add_predict):
        add(commands)
    step = commands.add_parser("step", help="run one step alone on directories")
    add_step_parsers(step.add_subparsers(dest="step", required=True))
    for each in every_parser(parser):
        each.formatter_class = DefaultsShown
    return parser


def every_parser(parser: argparse.ArgumentParser):
    """``parser`` and each command's parser under it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield from every_parser(command)


def _add_compile(commands) -> None:
    p = commands.add_parser("compile", help="write the pipeline YAML for the Data Science Pipelines UI")
    p.add_argument("--output", required=True, metavar="FILE", help="the YAML file to write (its folder must exist)")
    add_compile_options(p)
    p.set_defaults(func=cmd_compile)


def _add_submit(commands) -> None:
    p = commands.add_parser("submit", help="start a run on a pipeline server")
    add_server_options(p)
    p.add_argument("--experiment", default="yolo-kfp", type=shown_name,
                   help="the experiment the run is filed under (made if missing)")
    p.add_argument("--run-name", type=shown_name, help="the run's name (default: yolo-kfp and the local time)")
    add_param_option(p)
    p.add_argument("--wait", action="store_true", help="follow the run; exit non-zero unless it succeeds")
    p.add_argument("--poll-seconds", type=seconds(1, 3600), default=10,
                   help="with --wait: seconds between two looks at the run's state, 1 to 3600")
    add_compile_options(p)
    p.set_defaults(func=cmd_submit)


def _add_upload(commands) -> None:
    p = commands.add_parser("upload", help="upload the pipeline as a new version (the UI then lists it)")
    add_server_options(p)
    p.add_argument("--version", type=shown_name, help="version name (default: v<UTC time>)")
    add_compile_options(p)
    p.set_defaults(func=cmd_upload)


def _add_schedule(commands) -> None:
    p = commands.add_parser("schedule", help="recurring runs of the latest uploaded version")
    add_server_options(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--cron", help="six fields, seconds first, in UTC (the server's scheduler): '0 0 3 * * 1' is "
                                     "Mondays at 03:00 UTC; or @hourly, @daily, @weekly (Sunday 00:00), @monthly")
    p.add_argument("--name", default="yolo-kfp-retraining", help="with --cron: the recurring run's name")
    p.add_argument("--experiment", default="yolo-kfp", type=shown_name,
                   help="with --cron: the experiment its runs are filed under")
    add_param_option(p)
    p.add_argument("--catch-up", action="store_true", help="run the schedules missed while paused")
    add_server_target(p)
    what.add_argument("--list", action="store_true", help="list the recurring runs")
    for action in ("enable", "disable", "delete"):
        what.add_argument(f"--{action}", metavar="NAME", help=f"{action} the recurring run of this name")
    p.set_defaults(func=cmd_schedule)


def _add_run_local(commands) -> None:
    p = commands.add_parser("run-local", help="run the whole pipeline here through kfp.local")
    p.add_argument("--output-dir", required=True, metavar="DIR",
                   help="a new or empty folder, or an earlier run-local's (reused: its training resumes)")
    p.add_argument("--demo", action="store_true", help="synthetic offline Open Images mirror, small settings")
    p.add_argument("--search", action="store_true", help="with --demo: a small search first (4 trials of lr0 x "
                                                         "freeze with SGD, 5 epochs each), the same as --param "
                                                         "optimizer=SGD --param search_space='{\"lr0\": [0.002, "
                                                         "0.02], \"freeze\": [0, 10]}' --param search_epochs=5")
    p.add_argument("--mlflow", action="store_true", help="log to an MLflow tracking server started for the run "
                                                         "(its store kept in OUTPUT_DIR/mlflow)")
    p.add_argument("--nodes", type=count(1, 8), default=1,
                   help="train across this many nodes, run here as torchrun processes (CPU, gloo) from the job the "
                        "cluster would get (what compile --nodes makes); it stages the dataset in the data "
                        "connection's bucket (the demo brings one)")
    p.add_argument("--modelcar-base", default="", metavar="REF",
                   help="with --param publish_oci: the image the model's image is built on, by digest (the compile "
                        "option --modelcar-base); python -m yolo_kfp.local.oci_registry starts a registry with one")
    p.add_argument("--verbose", action="store_true", help="stream everything the steps print (kfp.local, the "
                                                          "libraries) instead of progress lines; the logs are "
                                                          "kept in OUTPUT_DIR/logs either way")
    add_param_option(p)
    p.set_defaults(func=cmd_run_local)


def _add_predict(commands) -> None:
    p = commands.add_parser("predict", help="boxes of an exported model on images: run here (--model) or by a "
                                            "KServe v2 endpoint (--url)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="an image, a folder of images or a glob ('photos/*.jpg')")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an exported model.onnx, or the folder holding it (run-local's --output-dir, "
                                        "an export step's --output-dir, a published version)")
    source.add_argument("--url", help="a served model's KServe v2 URL: https://HOST/v2/models/NAME")
    p.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "openvino"),
                   help="with --model: the runtime (openvino: the engine of OpenVINO Model Server)")
    p.add_argument("--classes", type=classes,
                   help="the class names in training order: with --url, as v2 metadata has none (default: "
                        f"{','.join(run_parameters.BY_NAME['classes'].default)}); with --model, checked against the "
                        "model's own")
    add_token_options(p, "with --url: ")
    p.add_argument("--ca-bundle", default="", help="with --url: CA bundle of the endpoint's certificate")
    p.add_argument("--timeout", type=seconds(0.1, 3600), help="with --url: seconds to wait for the server to say "
                                                               "something, 0.1 to 3600 (default: 10)")
    p.add_argument("--conf", type=float, help="lowest confidence kept, 0 to 1 (default: 0.25, what the evaluation "
                                              "counts as a detection)")
    p.add_argument("--iou", type=float, help="overlap above which NMS drops the weaker of two boxes of a class, 0 to 1 "
                                             "(default: Ultralytics' 0.7)")
    p.add_argument("--save", metavar="DIR", help="write each image with its boxes and labels drawn into DIR")
    p.add_argument("--json", action="store_true", help="print the detections as COCO results (JSON): file_name, "
                                                       "image_id, category_id (class + 1), category_name, "
                                                       "bbox [x, y, width, height] in pixels, score")
    p.set_defaults(func=cmd_predict)
