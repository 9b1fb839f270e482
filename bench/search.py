"""What a search tells apart on the demo data, and how far from saturated the demo is:

- search:   ``yolo-kfp run-local --demo --search`` (the fixed small search that flag sets: its space and
            trials are printed from the run's ``search.json``); each trial scored on the validation split;
- transfer: ``yolo-kfp run-local --demo``, the demo as it is (its base checkpoint, the first layers frozen);
- scratch:  the same from an untrained ``yolov5n.yaml`` saved as a checkpoint, ``freeze=0``.

Each is a whole local pipeline run in a fresh output dir, one after the other. The last line is
``RESULT search <best - worst val mAP50-95 across the trials> <transfer - scratch test mAP50-95> <demo test
mAP50-95>``, the demo's being the transfer run's.

    python bench/search.py [--work-dir DIR]   (DIR kept; by default a temporary one, removed)
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from transfer_vs_scratch import ROUTES  # noqa: E402

from yolo_kfp.model.search_report import SCORE, trials_markdown  # noqa: E402

SCRATCH_MODEL, SCRATCH_FREEZE = ROUTES["scratch"]


def run_local(output_dir: str, *options: str) -> None:
    """One ``yolo-kfp run-local --demo`` run, in a process of its own as a user starts it; a finished one in a
    kept ``--work-dir`` is not run again."""
    if os.path.exists(os.path.join(output_dir, "metrics.json")):
        print(f"reusing the finished run in {output_dir}", flush=True)
        return
    command = [sys.executable, "-m", "yolo_kfp.cli", "run-local", "--demo", "--output-dir", output_dir, *options]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def test_score(output_dir: str) -> float:
    """The run's test-split mAP50-95, from the evaluate step's metrics gathered in the output dir."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return json.load(f)["map50_95"]


def search_of(output_dir: str) -> dict:
    """The run's ``search.json``: gathered in the output dir, else the one in the train step's model."""
    found = [os.path.join(output_dir, "search.json")]
    if not os.path.exists(found[0]):
        found = glob.glob(os.path.join(output_dir, "pipeline-root", "**", "search.json"), recursive=True)
    if len(found) != 1:
        raise SystemExit(f"expected one search.json under {output_dir}, found {len(found)}: did the run search?")
    with open(found[0]) as f:
        return json.load(f)


def untrained_checkpoint(work: str) -> str:
    """``SCRATCH_MODEL`` (a model definition) built untrained and saved as a checkpoint: the pipeline's base_model
    is a checkpoint, and fine-tuning an untrained one with nothing frozen is training from scratch."""
    from yolo_kfp.model.ultralytics_env import configure_offline

    path = os.path.join(work, "untrained-yolov5n.pt")
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(work, "ultralytics"))
    configure_offline()
    from ultralytics import YOLO

    YOLO(SCRATCH_MODEL).save(path)
    return path


def measure(work: str) -> tuple[float, float, float]:
    runs = {name: os.path.join(work, name) for name in ("search", "transfer", "scratch")}
    run_local(runs["search"], "--search")
    run_local(runs["transfer"])
    run_local(runs["scratch"], "--param", f"base_model={untrained_checkpoint(work)}", "--param",
              f"freeze={SCRATCH_FREEZE}")

    search = search_of(runs["search"])
    scores = [trial["val"][SCORE] for trial in search["trials"]]
    print(f"search space: {json.dumps(search['space'])}; {len(scores)} trials")
    print(trials_markdown(search["trials"], search["winner"]))
    print(f"search winner, full training: test mAP50-95 {test_score(runs['search']):.3f}")
    transfer, scratch = test_score(runs["transfer"]), test_score(runs["scratch"])
    print(f"transfer (the demo): test mAP50-95 {transfer:.3f}; scratch ({SCRATCH_MODEL}, freeze {SCRATCH_FREEZE}): "
          f"{scratch:.3f}")
    return max(scores) - min(scores), transfer - scratch, transfer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", help="keep the three runs' output dirs here")
    args = parser.parse_args()
    if args.work_dir:
        os.makedirs(args.work_dir, exist_ok=True)
        spread, margin, demo_score = measure(args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as work:
            spread, margin, demo_score = measure(work)
    print(f"RESULT search {spread:.3f} {margin:.3f} {demo_score:.3f}")


if __name__ == "__main__":
    main()
