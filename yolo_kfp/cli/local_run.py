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
    preset = {}
    if args.demo:
        from yolo_kfp.local.demo import PARAMS, SEARCH_PARAMS

        preset = {**PARAMS, **(SEARCH_PARAMS if args.search else {})}
    params = parse_params(args.param, preset)  # the values the run will use, checked once
    if args.nodes > 1 and not args.demo and not os.environ.get("AWS_S3_BUCKET"):
        raise ValueError("--nodes above 1 stages the dataset for the nodes in the data connection's bucket: set "
                         "AWS_S3_BUCKET and the other AWS_* variables of an S3 you can write (or use --demo)")
    result = run_local(args.output_dir, params, demo=args.demo, mlflow=args.mlflow, verbose=args.verbose,
                       nodes=args.nodes)
    print()
    print("\n".join(summary_lines(result, os.path.abspath(args.output_dir))))
    if "notice" in result:
        print(result["notice"])
    if args.mlflow:
        print(f"MLflow's UI on this run: {' '.join(reopen_command(os.path.join(args.output_dir, 'mlflow')))}, "
              "then open http://127.0.0.1:5000")
