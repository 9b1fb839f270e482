"""``run-local``: the whole pipeline on this machine through kfp.local. The only command that imports the local
harness, inside its function, so that the others never load it."""

import os


def cmd_run_local(args) -> None:
    from yolo_kfp.local.mlflow_server import reopen_command
    from yolo_kfp.local.progress import summary_lines
    from yolo_kfp.local.runner import run_local
    from yolo_kfp.params.run_values import parse_params

    if args.search and not args.demo:
        raise ValueError("--search is the demo's small search: with your own data set --param search_space=...")
    params = parse_params(args.param, demo_preset(args.param or [], args.search) if args.demo else {})
    if args.nodes > 1 and not args.demo and not os.environ.get("AWS_S3_BUCKET"):
        raise ValueError("--nodes above 1 stages the dataset for the nodes in the data connection's bucket: set "
                         "AWS_S3_BUCKET and the other AWS_* variables of an S3 you can write (or use --demo)")
    result = run_local(args.output_dir, params, demo=args.demo, mlflow=args.mlflow, verbose=args.verbose,
                       nodes=args.nodes, modelcar_base=args.modelcar_base)
    print()
    print("\n".join(summary_lines(result, os.path.abspath(args.output_dir))))
    if "notice" in result:
        print(result["notice"])
    if args.mlflow:
        print(f"MLflow's UI on this run: {' '.join(reopen_command(os.path.join(args.output_dir, 'mlflow')))}, "
              "then open http://127.0.0.1:5000")


def demo_preset(items: list[str], search: bool) -> dict:
    """The demo's settings under the ``--param`` items: its small ones, its search's with ``search``, and its own
    bucket to publish to where ``publish_oci`` is given without ``publish_to`` (the image goes with the model's
    publication in S3)."""
    from yolo_kfp.local.demo import DEMO_PUBLISH_TO, PARAMS, SEARCH_PARAMS

    named = {item.split("=", 1)[0] for item in items}
    return {**PARAMS, **(SEARCH_PARAMS if search else {}),
            **({"publish_to": DEMO_PUBLISH_TO} if "publish_oci" in named and "publish_to" not in named else {})}
