"""``yolo-kfp step``: one step alone on directories, its options those of the run parameters it takes (type,
check, default and description from the parameter table)."""

import argparse

from yolo_kfp.cli.options import classes
from yolo_kfp.cli.step_commands import (
    cmd_convert,
    cmd_download,
    cmd_evaluate,
    cmd_export,
    cmd_train,
    cmd_train_node,
    json_step,
)
from yolo_kfp.params import run_parameters

OUTPUT_DIR_HELP = "the folder the step writes into (made if missing)"
TRAINED_IMGSZ_HELP = "image size in pixels (default: the size the model was trained at; another one is warned about)"


def _ratios(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _parameter(name: str):
    """An argparse type: the run parameter ``name``'s text, converted to its type and checked against its range
    and rule, at the door like ``--param``."""
    from yolo_kfp.params.validation import convert_parameter, parameter_problems

    def parse(text: str):
        try:
            value = convert_parameter(name, text, run_parameters.BY_NAME[name].kind)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        problems = parameter_problems({name: value})
        if problems:
            raise argparse.ArgumentTypeError("; ".join(problems))
        return value

    parse.__name__ = name
    return parse


def _add_parameter(parser, name: str, **settings) -> None:
    """``--name`` for a run parameter: its type, check, default and description from the parameter table."""
    parameter = run_parameters.BY_NAME[name]
    parser.add_argument(f"--{name.replace('_', '-')}", type=_parameter(name),
                        **{"default": parameter.default, "help": parameter.description, **settings})


def _default(name: str):
    """The run parameter ``name``'s default from the table, a copy of its own (a command may change its list)."""
    return run_parameters.defaults()[name]


def add_step_parsers(steps) -> None:
    for add in (_add_download, _add_convert, _add_train, _add_train_node, _add_evaluate, _add_export):
        add(steps)


def _add_download(steps) -> None:
    p = steps.add_parser("download", help="Open Images subset through FiftyOne's zoo -> raw dataset dir")
    p.add_argument("--output-dir", required=True, metavar="DIR", help=OUTPUT_DIR_HELP)
    p.add_argument("--classes", type=classes, default=_default("classes"), help="e.g. 'Bicycle,Car,Traffic sign'")
    for name in ("max_samples_per_class", "split", "seed"):
        _add_parameter(p, name)
    p.set_defaults(func=json_step(cmd_download))


def _add_convert(steps) -> None:
    p = steps.add_parser("convert", help="raw Open Images dir -> YOLO dataset dir")
    p.add_argument("--raw", required=True, metavar="DIR", help="a download step's output dir (Open Images layout)")
    p.add_argument("--output-dir", required=True, metavar="DIR", help=OUTPUT_DIR_HELP)
    p.add_argument("--classes", type=classes, default=_default("classes"),
                   help="the classes to keep, in training order, e.g. 'Bicycle,Car,Traffic sign'")
    _add_parameter(p, "seed")
    p.add_argument("--split-ratios", type=_ratios, default=_default("split_ratios"), help="train,val,test")
    p.add_argument("--exclude-group-of", action="store_true", help="drop Open Images 'group of' boxes")
    p.add_argument("--allow-missing-classes", action="store_true", help="warn, not fail, on a class without boxes")
    p.set_defaults(func=json_step(cmd_convert))


def _add_train(steps) -> None:
    p = steps.add_parser("train", help="YOLO dataset dir -> model dir (weights, args, per-epoch results)")
    p.add_argument("--data", required=True, help="a convert output dir (holds dataset.yaml)")
    p.add_argument("--output-dir", required=True, metavar="DIR", help=OUTPUT_DIR_HELP)
    for name in run_parameters.TRAINING:
        _add_parameter(p, name)
    p.add_argument("--device", default="", help="Ultralytics device, e.g. 0 or cpu (default: auto)")
    p.set_defaults(func=json_step(cmd_train))


def _add_train_node(steps) -> None:
    p = steps.add_parser("train-node", help="one node of a training across nodes, under torchrun (a job's pods run "
                                            "it): the staged dataset -> rank 0's model, back in the staging prefix")
    p.add_argument("--staging", required=True, metavar="S3_URL",
                   help="the job's staging prefix in the data connection's bucket (it holds dataset/)")
    p.add_argument("--settings", required=True, metavar="JSON", help="the training parameters and gpus, as JSON")
    p.add_argument("--mlflow-tracking-uri", default="", help="MLflow's server (rank 0 logs to it), or none")
    p.add_argument("--mlflow-experiment", default="", help="its experiment")
    p.set_defaults(func=cmd_train_node)


def _add_evaluate(steps) -> None:
    p = steps.add_parser("evaluate", help="model + YOLO dataset -> test-split metrics.json")
    p.add_argument("--data", required=True, metavar="DIR", help="a convert output dir (holds dataset.yaml)")
    p.add_argument("--model", required=True, help="a train output dir or a .pt file")
    p.add_argument("--output-dir", required=True, metavar="DIR", help=OUTPUT_DIR_HELP)
    _add_parameter(p, "imgsz", default=None, help=TRAINED_IMGSZ_HELP)
    _add_parameter(p, "batch")
    p.add_argument("--device", default="", help="Ultralytics device, e.g. 0 or cpu (default: auto)")
    p.set_defaults(func=json_step(cmd_evaluate))


def _add_export(steps) -> None:
    p = steps.add_parser("export", help="model -> yolo-kfp/1/model.onnx and export.json (the serving layout)")
    p.add_argument("--model", required=True, help="a train output dir or a .pt file")
    p.add_argument("--output-dir", required=True, metavar="DIR", help=OUTPUT_DIR_HELP)
    _add_parameter(p, "imgsz", default=None, help=TRAINED_IMGSZ_HELP)
    p.add_argument("--data", metavar="DIR",
                   help="a YOLO dataset dir: its test images check the ONNX model against PyTorch")
    p.set_defaults(func=json_step(cmd_export))
