"""The commands that write the pipeline or talk to a pipeline server: ``compile``, ``submit``, ``upload`` and
``schedule``. None loads the local harness (a test checks it)."""

import os

from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.compile_options import CompileOptions, compile_options
from yolo_kfp.pipeline.pipeline import PIPELINE_NAME, compile_pipeline


def _options(args) -> CompileOptions:
    return CompileOptions(**{option_field.name: getattr(args, option_field.name) for option_field in compile_options()})


def _server(args):
    from yolo_kfp.cluster.client import Server, resolve_token
    from yolo_kfp.cluster.workbench import current_namespace, dashboard_url

    return Server(host=args.host, token=resolve_token(args.token, given_file=args.token_file),
                  ca_bundle=args.ca_bundle, verify_ssl=not args.insecure, ui_host=args.ui_host,
                  dashboard=dashboard_url(), namespace=current_namespace(),
                  allow_plain_http_token=args.allow_plain_http_token)


# How kfp's writer starts the YAML it writes: a file that starts otherwise is not an earlier compile's.
COMPILED_HEADER = f"# PIPELINE DEFINITION\n# Name: {PIPELINE_NAME}\n".encode()


def refuse_overwriting_others(output: str) -> None:
    """``--output`` is a new file or one an earlier compile wrote: nothing else of the user's is overwritten."""
    if os.path.isdir(output):
        raise ValueError(f"--output {output} is a folder: name the YAML file to write in it, e.g. "
                         f"{os.path.join(output, 'yolo_pipeline.yaml')}")
    if os.path.exists(output):
        with open(output, "rb") as f:
            if f.read(len(COMPILED_HEADER)) != COMPILED_HEADER:
                raise ValueError(f"--output {output} exists and is not a pipeline that yolo-kfp compile wrote: name "
                                 "a new file (nothing was written)")


def cmd_compile(args) -> None:
    refuse_overwriting_others(args.output)
    path = compile_pipeline(args.output, _options(args))
    print(f"compiled {path}: upload it in the Data Science Pipelines UI (Pipelines > Import pipeline)")


def cmd_submit(args) -> int:
    from yolo_kfp.cluster import client
    from yolo_kfp.params.run_values import param_texts

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
    from yolo_kfp.params.run_values import param_texts

    if args.cron is None and (args.param or args.catch_up):
        raise ValueError("--param and --catch-up go with --cron (a new recurring run): leave them out")
    server = _server(args)
    changes = [(action, getattr(args, action)) for action in schedules.SCHEDULE_ACTIONS
               if getattr(args, action) is not None]
    if args.list:
        rows = schedules.list_schedules(server)
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
        if not rows:
            print(f"no recurring runs on {server.host}")
    elif changes:
        action, name = changes[0]
        print(f"{action}d {name}: {schedules.change_schedule(server, name, action)}")
    else:
        assert args.cron is not None  # --cron, --list or a change: the parser requires one of them
        recurring_id, version = schedules.schedule(server, args.cron, args.name, param_texts(args.param),
                                                   args.experiment, args.catch_up, servers.server_target(args.server))
        print(f"recurring run {args.name} ({recurring_id}) at {schedules.six_field_cron(args.cron)!r} "
              f"({schedules.TIME_ZONE}), running {version}")
