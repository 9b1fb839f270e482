"""``yolo-kfp``: compile the pipeline, run it locally, or run one step on directories.

Defaults come from the parameter table (``parameter_defaults``), so the CLI, the compiled YAML
and the notebook cannot disagree.
"""

import argparse
import contextlib
import json
import logging
import os
import signal
import sys

from kfp_server_api.exceptions import ApiException

from yolo_kfp.infra.storage import StorageError
from yolo_kfp.params import run_parameters
from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.compile_options import CompileOptions, compile_options, option_default
from yolo_kfp.pipeline.pipeline import compile_pipeline, parameter_defaults

DEFAULTS = parameter_defaults()
TRAINED_IMGSZ_HELP = "image size in pixels (default: the size the model was trained at; another one is warned about)"


def _classes(text: str) -> list[str]:
    """A JSON list, or names separated by commas."""
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [name.strip() for name in text.split(",") if name.strip()]


def _ratios(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def _library_output_to_stderr():
    """Ultralytics logs and draws progress bars on stdout, which a step keeps for its JSON result alone.
    Its log handler takes the stdout of when it is first imported: inside a step's core, so here too."""
    return contextlib.redirect_stdout(sys.stderr)


def _json_object(kind: type):
    """An argparse type: JSON text of ``kind`` (a dict or a list)."""
    def parse(text: str):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"wants a JSON {'object' if kind is dict else 'list'}, not {text!r}")
        return value

    parse.__name__ = f"JSON {kind.__name__}"
    return parse


def _options(args) -> CompileOptions:
    return CompileOptions(**{option_field.name: getattr(args, option_field.name) for option_field in compile_options()})


def _server(args):
    from yolo_kfp.cluster.client import Server, resolve_token
    from yolo_kfp.cluster.workbench import current_namespace, dashboard_url

    return Server(host=args.host, token=resolve_token(args.token, given_file=args.token_file),
                  ca_bundle=args.ca_bundle, verify_ssl=not args.insecure, ui_host=args.ui_host,
                  dashboard=dashboard_url(), namespace=current_namespace(),
                  allow_plain_http_token=args.allow_plain_http_token)


def cmd_compile(args) -> None:
    path = compile_pipeline(args.output, _options(args))
    print(f"compiled {path}: upload it in the Data Science Pipelines UI (Pipelines > Import pipeline)")


def cmd_run_local(args) -> None:
    from yolo_kfp.local.mlflow_server import reopen_command
    from yolo_kfp.local.progress import summary_lines
    from yolo_kfp.local.runner import run_local
    from yolo_kfp.pipeline.parameters import parse_params

    params = parse_params(args.param)
    if args.search:
        if not args.demo:
            raise ValueError("--search is the demo's small search: with your own data set --param search_space=...")
        from yolo_kfp.local.demo import SEARCH_PARAMS

        params = {**SEARCH_PARAMS, **params}
    result = run_local(args.output_dir, params, demo=args.demo, mlflow=args.mlflow, verbose=args.verbose)
    print()
    print("\n".join(summary_lines(result, os.path.abspath(args.output_dir))))
    if "notice" in result:
        print(result["notice"])
    if args.mlflow:
        print(f"MLflow's UI on this run: {' '.join(reopen_command(os.path.join(args.output_dir, 'mlflow')))}, "
              "then open http://127.0.0.1:5000")


def cmd_submit(args) -> int:
    from yolo_kfp.cluster import client
    from yolo_kfp.pipeline.parameters import param_texts

    server = _server(args)
    run_id = client.submit(server, param_texts(args.param), args.experiment, args.run_name, _options(args))
    print(f"run {run_id}: {server.run_link(run_id)}")
    if not args.wait:
        return 0
    state = client.wait(server, run_id, args.poll_seconds)
    print(f"run {run_id} ended {state}")
    return 0 if state == "SUCCEEDED" else 1


def cmd_upload(args) -> None:
    from yolo_kfp.cluster import client

    pipeline_id, version_id = client.upload(_server(args), args.version, _options(args))
    print(f"pipeline {pipeline_id} version {version_id}")


def cmd_schedule(args) -> None:
    from yolo_kfp.cluster import schedules
    from yolo_kfp.pipeline.parameters import param_texts

    if args.cron is None and (args.param or args.catch_up):
        raise ValueError("--param and --catch-up go with --cron (a new recurring run): leave them out")
    server = _server(args)
    changes = [(action, getattr(args, action)) for action in schedules.SCHEDULE_ACTIONS
               if getattr(args, action) is not None]
    if args.list:
        for row in schedules.list_schedules(server):
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    elif changes:
        action, name = changes[0]
        print(f"{action}d {name}: {schedules.change_schedule(server, name, action)}")
    else:
        recurring_id, version = schedules.schedule(server, args.cron, args.name, param_texts(args.param),
                                                   args.experiment, args.catch_up, servers.server_target(args.server))
        print(f"recurring run {args.name} ({recurring_id}) at {schedules.six_field_cron(args.cron)!r} "
              f"({schedules.TIME_ZONE}), running {version}")


def _json_step(command):
    """A step command whose result is the only thing on stdout, as JSON: what the libraries print meanwhile
    (Ultralytics' settings notice and progress bars, FiftyOne's progress) goes to stderr."""
    def run(args) -> None:
        with _library_output_to_stderr():
            result = command(args)
        _print_json(result)

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

    return train_yolo(data_dir=args.data, output_dir=args.output_dir, base_model=args.base_model,
                      epochs=args.epochs, batch=args.batch, imgsz=args.imgsz, freeze=args.freeze,
                      workers=args.workers, cache=args.cache, device=args.device, patience=args.patience,
                      optimizer=args.optimizer, lr0=args.lr0, seed=args.seed, overrides=json.loads(args.train_args))


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


def cmd_predict(args) -> None:
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("numpy", "cv2")):
        raise ValueError("predict needs numpy and OpenCV: pip install 'yolo-kfp[train]' (the base install has neither)")
    from yolo_kfp.cluster import predict, prediction_output

    predict.check_settings(conf=args.conf, nms_iou=args.iou, timeout=args.timeout)
    detect = _detector(args)
    images = predict.image_paths(args.images)
    if args.save:
        prediction_output.refuse_overwriting(images, args.save)
    with _library_output_to_stderr():
        results = detect(images=images)
    if args.json:
        _print_json(prediction_output.coco_results(images, results))
    else:
        for path, detections in zip(images, results):
            print(f"{path}: {len(detections)} boxes")
            for d in detections:
                print(f"  {d.name:<20} {d.confidence:.3f}  " + " ".join(f"{v:.1f}" for v in d.box))
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for path, detections, target in zip(images, results, prediction_output.annotated_paths(images, args.save)):
            prediction_output.draw_detections(path, detections, target)
        print(f"{len(images)} images with their boxes drawn in {args.save}", file=sys.stderr)


def _detector(args):
    """Images -> detections per image, by ``--model`` here or the model at ``--url``; either is checked now."""
    import functools

    from yolo_kfp.cluster import predict
    from yolo_kfp.infra.urls import read_token_file

    settings = {name: value for name, value in (("conf", args.conf), ("nms_iou", args.iou)) if value is not None}
    if args.model:
        return functools.partial(predict.predict_local, model=predict.onnx_model(args.model), engine=args.engine,
                                 classes=args.classes, **settings)
    token = read_token_file(args.token_file) if args.token_file else args.token
    predict.check_url(args.url, token, args.allow_plain_http_token)
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    return functools.partial(predict.predict_remote, url=args.url, names=args.classes or DEFAULTS["classes"],
                             token=token, ca_bundle=args.ca_bundle, allow_plain_http_token=args.allow_plain_http_token,
                             **settings)


def _add_predict_parser(commands) -> None:
    p = commands.add_parser("predict", help="boxes of an exported model on images: run here (--model) or by a "
                                            "KServe v2 endpoint (--url)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="an image, a folder of images or a glob ('photos/*.jpg')")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an exported model.onnx, or the folder holding it (run-local's --output-dir, "
                                        "an export step's --output-dir, a published version)")
    source.add_argument("--url", help="a served model's KServe v2 URL: https://HOST/v2/models/NAME")
    p.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "openvino"),
                   help="with --model: the runtime (openvino: the engine of OpenVINO Model Server)")
    p.add_argument("--classes", type=_classes,
                   help="the class names in training order: with --url, as v2 metadata has none (default: "
                        f"{','.join(DEFAULTS['classes'])}); with --model, checked against the model's own")
    _add_token_options(p, "with --url: ")
    p.add_argument("--ca-bundle", default="", help="with --url: CA bundle of the endpoint's certificate")
    p.add_argument("--timeout", type=float, help="with --url: seconds to wait for the server to say something "
                                                  "(default: 10)")
    p.add_argument("--conf", type=float, help="lowest confidence kept, 0 to 1 (default: the one evaluation counts)")
    p.add_argument("--iou", type=float, help="overlap above which NMS drops the weaker of two boxes of a class, 0 to 1 "
                                             "(default: Ultralytics' 0.7)")
    p.add_argument("--save", metavar="DIR", help="write each image with its boxes and labels drawn into DIR")
    p.add_argument("--json", action="store_true", help="print the detections as COCO results (JSON): file_name, "
                                                       "image_id, category_id (class + 1), category_name, "
                                                       "bbox [x, y, width, height] in pixels, score")
    p.set_defaults(func=cmd_predict)


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


def _add_step_parsers(steps) -> None:
    d = DEFAULTS
    p = steps.add_parser("download", help="Open Images subset through FiftyOne's zoo -> raw dataset dir")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--classes", type=_classes, default=d["classes"], help="e.g. 'Bicycle,Car,Traffic sign'")
    for name in ("max_samples_per_class", "split", "seed"):
        _add_parameter(p, name)
    p.set_defaults(func=_json_step(cmd_download))

    p = steps.add_parser("convert", help="raw Open Images dir -> YOLO dataset dir")
    p.add_argument("--raw", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--classes", type=_classes, default=d["classes"])
    _add_parameter(p, "seed")
    p.add_argument("--split-ratios", type=_ratios, default=d["split_ratios"], help="train,val,test")
    p.add_argument("--exclude-group-of", action="store_true", help="drop Open Images 'group of' boxes")
    p.add_argument("--allow-missing-classes", action="store_true", help="warn, not fail, on a class without boxes")
    p.set_defaults(func=_json_step(cmd_convert))

    p = steps.add_parser("train", help="YOLO dataset dir -> model dir (weights, args, per-epoch results)")
    p.add_argument("--data", required=True, help="a convert output dir (holds dataset.yaml)")
    p.add_argument("--output-dir", required=True)
    for name in ("base_model", "cache", "optimizer", "epochs", "batch", "imgsz", "freeze", "workers", "patience",
                 "seed", "lr0"):
        _add_parameter(p, name)
    p.add_argument("--device", default="", help="Ultralytics device, e.g. 0 or cpu (default: auto)")
    p.add_argument("--train-args", default=json.dumps(d["train_args"]), help="more Ultralytics arguments, JSON")
    p.set_defaults(func=_json_step(cmd_train))

    p = steps.add_parser("evaluate", help="model + YOLO dataset -> test-split metrics.json")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="a train output dir or a .pt file")
    p.add_argument("--output-dir", required=True)
    _add_parameter(p, "imgsz", default=None, help=TRAINED_IMGSZ_HELP)
    _add_parameter(p, "batch")
    p.add_argument("--device", default="")
    p.set_defaults(func=_json_step(cmd_evaluate))

    p = steps.add_parser("export", help="model -> yolo-kfp/1/model.onnx and export.json (the serving layout)")
    p.add_argument("--model", required=True, help="a train output dir or a .pt file")
    p.add_argument("--output-dir", required=True)
    _add_parameter(p, "imgsz", default=None, help=TRAINED_IMGSZ_HELP)
    p.add_argument("--data", help="a YOLO dataset dir: its test images check the ONNX model against PyTorch")
    p.set_defaults(func=_json_step(cmd_export))


def _add_option(parser, option_field) -> None:
    """``--name`` for a compile option, from its declaration (``pipeline.pipeline.option``)."""
    meta, default = option_field.metadata, option_default(option_field)
    settings = {"help": f"{meta['help']} (default: {json.dumps(default)})", "default": default}
    if meta["kind"] in (dict, list):
        settings.update(type=_json_object(meta["kind"]), metavar="JSON")
    elif meta["kind"] is int:
        settings["type"] = int
    settings.update({k: v for k, v in meta.items() if k not in ("help", "kind")})
    parser.add_argument(f"--{option_field.name.replace('_', '-')}", **settings)


def _add_server_target(p) -> None:
    _add_option(p, next(f for f in compile_options() if f.name == "server"))


def _add_compile_options(p) -> None:
    for option_field in compile_options():
        _add_option(p, option_field)


def _add_token_options(p, scope: str, default: str = "") -> None:
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token-file", metavar="FILE", help=f"{scope}a file holding the bearer token, e.g. "
                                                            f"--token-file <(oc whoami -t){default}")
    token.add_argument("--token", help=f"{scope}the bearer token itself: visible to anyone in ps and kept in "
                                       "shell history; prefer --token-file or an environment variable")
    p.add_argument("--allow-plain-http-token", action="store_true",
                   help="send the token to an http:// server too (readable on the way): only where the network "
                        "between is yours, e.g. a test server on 127.0.0.1")


def _add_server_options(p) -> None:
    p.add_argument("--host", required=True, help="the pipeline server's URL (the DSPA route)")
    _add_token_options(p, "", " (without it or --token: $KFP_TOKEN, $KF_PIPELINES_TOKEN, the pod's token)")
    p.add_argument("--ca-bundle", help="CA bundle for the server's certificate (default: in a workbench the "
                                       "service CA for *.svc hosts, else the cluster's trusted bundle, else the "
                                       "system store)")
    p.add_argument("--insecure", action="store_true", help="do not verify the route's certificate")
    p.add_argument("--ui-host", help="a KFP UI for run links (default: in a workbench the OpenShift AI "
                                     "dashboard's run page, else --host)")


def build_parser() -> argparse.ArgumentParser:
    from yolo_kfp import __version__

    parser = argparse.ArgumentParser(prog="yolo-kfp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("compile", help="write the pipeline YAML for the Data Science Pipelines UI")
    p.add_argument("--output", required=True)
    _add_compile_options(p)
    p.set_defaults(func=cmd_compile)

    p = commands.add_parser("submit", help="start a run on a pipeline server")
    _add_server_options(p)
    p.add_argument("--experiment", default="yolo-kfp")
    p.add_argument("--run-name")
    _add_param_option(p)
    p.add_argument("--wait", action="store_true", help="follow the run; exit non-zero unless it succeeds")
    p.add_argument("--poll-seconds", type=float, default=10)
    _add_compile_options(p)
    p.set_defaults(func=cmd_submit)

    p = commands.add_parser("upload", help="upload the pipeline as a new version (the UI then lists it)")
    _add_server_options(p)
    p.add_argument("--version", help="version name (default: v<UTC time>)")
    _add_compile_options(p)
    p.set_defaults(func=cmd_upload)

    p = commands.add_parser("schedule", help="recurring runs of the latest uploaded version")
    _add_server_options(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--cron", help="six fields, seconds first, in UTC (the server's scheduler): '0 0 3 * * 1' is "
                                     "Mondays at 03:00 UTC; or @hourly, @daily, @weekly (Sunday 00:00), @monthly")
    p.add_argument("--name", default="yolo-kfp-retraining")
    p.add_argument("--experiment", default="yolo-kfp")
    _add_param_option(p)
    p.add_argument("--catch-up", action="store_true", help="run the schedules missed while paused")
    _add_server_target(p)
    what.add_argument("--list", action="store_true", help="list the recurring runs")
    for action in ("enable", "disable", "delete"):
        what.add_argument(f"--{action}", metavar="NAME", help=f"{action} the recurring run of this name")
    p.set_defaults(func=cmd_schedule)

    p = commands.add_parser("run-local", help="run the whole pipeline here through kfp.local")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--demo", action="store_true", help="synthetic offline Open Images mirror, small settings")
    p.add_argument("--search", action="store_true", help="with --demo: a small search first (4 trials of lr0 x "
                                                         "freeze with SGD, 5 epochs each), the same as --param "
                                                         "optimizer=SGD --param search_space='{\"lr0\": [0.002, "
                                                         "0.02], \"freeze\": [0, 10]}' --param search_epochs=5")
    p.add_argument("--mlflow", action="store_true", help="log to an MLflow tracking server started for the run "
                                                         "(its store kept in OUTPUT_DIR/mlflow)")
    p.add_argument("--verbose", action="store_true", help="stream everything the steps print (kfp.local, the "
                                                          "libraries) instead of progress lines; the logs are "
                                                          "kept in OUTPUT_DIR/logs either way")
    _add_param_option(p)
    p.set_defaults(func=cmd_run_local)

    _add_predict_parser(commands)

    step = commands.add_parser("step", help="run one step alone on directories")
    _add_step_parsers(step.add_subparsers(dest="step", required=True))
    return parser


def _add_param_option(parser) -> None:
    """``--param``, with every run parameter (type, default, range, description) listed under ``--help``."""
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="set a run parameter (JSON values, e.g. epochs=10 or classes='[\"Car\"]'); listed below")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "run parameters:\n" + run_parameters.help_text()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _fail(message: str, code: int) -> int:
    """The command's last line, on stderr, on one line."""
    print(f"yolo-kfp: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return code


def _refuse_files_as_output_folders(args) -> None:
    """An output folder (``--output-dir``, predict's ``--save``) must be a folder or not yet exist, nor lie
    under a file: told before any work, not when the first output is written."""
    for flag in ("output_dir", "save"):
        folder = getattr(args, flag, None)
        if not folder:
            continue
        existing = os.path.abspath(folder)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            where = "is a file" if existing == os.path.abspath(folder) else f"lies under the file {existing}"
            raise ValueError(f"--{flag.replace('_', '-')} {folder} {where}, not a folder: give a folder (it is made "
                             "if missing)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: stop what was started, then exit
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _refuse_files_as_output_folders(args)
        return args.func(args) or 0
    except KeyboardInterrupt:
        return _fail("interrupted; nothing of the run is left running (run again into the same --output-dir to "
                     "resume training)", 130)
    except (ValueError, FileNotFoundError, StorageError) as error:
        return _fail(error, 2)
    except ApiException as error:
        return _fail(f"the pipeline server answered {error.status} {error.reason}: "
                     f"{(error.body or '').strip()[:500]}", 1)
    except RuntimeError as error:  # a failed local run (LocalRunFailed), an embedded server that did not start
        return _fail(error, 1)
    except OSError as error:  # PermissionError, TimeoutError, ...
        return _fail(f"{type(error).__name__}: {error}", 1)


if __name__ == "__main__":
    sys.exit(main())
