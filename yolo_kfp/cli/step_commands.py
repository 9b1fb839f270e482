"""``yolo-kfp step``: each step's library function called on directories, as the cluster calls it, its result
printed as JSON."""

import json
import os

from yolo_kfp.cli.output import library_output_to_stderr, print_json
from yolo_kfp.params import run_parameters


def json_step(command):
    """A step command whose result is the only thing on stdout, as JSON: what the libraries print meanwhile
    (Ultralytics' settings notice and progress bars, FiftyOne's progress) goes to stderr. Its output folder is
    new, empty or an earlier run's (``yolo_kfp.local.output_folder``)."""
    def run(args) -> None:
        from yolo_kfp.local.output_folder import writing_into

        with writing_into(args.output_dir), library_output_to_stderr():  # new, empty or an earlier run's folder
            result = command(args)
        print_json(result)

    return run


def cmd_download(args) -> dict:
    from yolo_kfp.data.download import download_open_images

    return download_open_images(output_dir=args.output_dir, classes=args.classes,
                                max_samples_per_class=args.max_samples_per_class, split=args.split, seed=args.seed)


def cmd_convert(args) -> dict:
    from yolo_kfp.data.convert import convert_to_yolo

    stats = convert_to_yolo(raw_dir=args.raw, output_dir=args.output_dir, classes=args.classes, seed=args.seed,
                            split_ratios=tuple(args.split_ratios), include_group_of=not args.exclude_group_of,
                            allow_missing_classes=args.allow_missing_classes)
    return ({k: stats[k] for k in ("images", "boxes", "dropped")} |
            {"split_images": {s: v["images"] for s, v in stats["splits"].items()}})


def cmd_train(args) -> dict:
    from yolo_kfp.model.train import train_yolo

    return train_yolo(data_dir=args.data, output_dir=args.output_dir, device=args.device,
                      **{name: getattr(args, name) for name in run_parameters.TRAINING})


def cmd_train_node(args) -> None:
    """One node's process of a training across nodes (a job's pod runs it under torchrun): its summary as JSON;
    no output folder here, rank 0 hands the model back through the staging prefix."""
    from yolo_kfp.model.node_training import train_on_node

    given = json.loads(args.settings)
    if not isinstance(given, dict):
        raise ValueError("--settings is not a JSON object of the training parameters and gpus")
    gpus = given.pop("gpus", 0)
    settings = {**run_parameters.training_settings(given), "gpus": gpus}  # the table's defaults, unknown names refused
    with library_output_to_stderr():
        summary = train_on_node(staging=args.staging, settings=settings, mlflow_tracking_uri=args.mlflow_tracking_uri,
                                mlflow_experiment=args.mlflow_experiment)
    print_json(summary)


def _weights(model: str) -> str:
    """A train output dir's best.pt, or the file given."""
    weights = os.path.join(model, "weights", "best.pt") if os.path.isdir(model) else model
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"no such model: {weights} (give a train output dir or a .pt file)")
    return weights


def cmd_evaluate(args) -> dict:
    from yolo_kfp.model.evaluate import evaluate_model

    metrics = evaluate_model(data_dir=args.data, weights=_weights(args.model), imgsz=args.imgsz,
                             batch=args.batch, device=args.device)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def cmd_export(args) -> dict:
    from yolo_kfp.model.evaluate import held_out_images
    from yolo_kfp.model.export import export_onnx

    check_images = held_out_images(args.data)[:16] if args.data else []  # as many as the pipeline's export checks
    return export_onnx(weights=_weights(args.model), output_dir=args.output_dir, imgsz=args.imgsz,
                       check_images=check_images)
