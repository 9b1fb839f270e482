"""The sharded download on the offline Open Images mirror (SeaweedFS on 127.0.0.1), measured side by side:

- unsharded:      the whole download in one step (``download_open_images``), images packed as the step does;
- parallelism 1:  plan, then the shards one after another, then merge: each a step of its own;
- parallelism 3:  plan, then the shards all at once, then merge.

Every step runs in a fresh Python process, as each runs in a pod of its own on a cluster (kfp.local
runs shards one after another, so it is not used here). Times are medians of ``--repeats`` runs.
The last line is ``RESULT download_shards <parallelism 1 time / parallelism 3 time>``.

    python bench/download_shards.py [--images-per-class 150] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from yolo_kfp.data import openimages as oi
from yolo_kfp.local.mirror import build_mirror, mirror_environment
from yolo_kfp.local.s3_server import SeaweedS3

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CLASSES = ["Bicycle", "Car", "Traffic sign"]
SPLIT = "validation"
SEED = 42
# What each step runs in its process: the components' cores, with the packing the components do.
STEPS = {
    "whole": "from yolo_kfp.data.download import download_open_images as f;"
             " from yolo_kfp.infra.packing import pack_in_place;"
             " f(output_dir=out, classes={classes!r}, max_samples_per_class={quota}, split={split!r}, seed={seed});"
             " pack_in_place(out, ('data',))",
    "plan": "from yolo_kfp.data.download_plan import make_plan as f;"
            " f(plan_dir=out, classes={classes!r}, max_samples_per_class={quota}, split={split!r}, seed={seed},"
            " shard_size={quota})",
    "shard": "from yolo_kfp.data.download_fetch import fetch_shard as f;"
             " from yolo_kfp.infra.packing import pack_in_place;"
             " f(plan_dir=plan, shard=shard, output_dir=out); pack_in_place(out, ('data',))",
    "merge": "from yolo_kfp.data.download_merge import merge_shards as f;"
             " from yolo_kfp.infra.packing import pack_in_place;"
             " f(plan_dir=plan, shard_dirs=shards, output_dir=out); pack_in_place(out, ('data',))",
}


def step(name: str, quota: int, **paths) -> None:
    code = STEPS[name].format(classes=CLASSES, quota=quota, split=SPLIT, seed=SEED)
    setup = "".join(f"{k} = {v!r}; " for k, v in paths.items())
    subprocess.run([sys.executable, "-c", setup + code], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def sharded(work: str, quota: int, parallelism: int) -> dict[str, float]:
    """Seconds of plan, shards (wall) and merge, with ``parallelism`` shards at once."""
    plan = os.path.join(work, "plan")
    seconds = {"plan": timed(lambda: step("plan", quota, out=plan))}
    with open(os.path.join(plan, "plan.json")) as f:
        names = list(json.load(f)["shards"])
    outs = [os.path.join(work, f"shard-{i}") for i in range(len(names))]
    with ThreadPoolExecutor(parallelism) as pool:
        seconds["shards"] = timed(lambda: list(pool.map(lambda a: step("shard", quota, plan=plan, shard=a[0],
                                                                       out=a[1]), zip(names, outs, strict=True))))
    seconds["merge"] = timed(lambda: step("merge", quota, plan=plan, shards=outs, out=os.path.join(work, "raw")))
    return seconds


def median_run(func, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-download-") as work:
            runs.append(func(work))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quota = args.images_per_class
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as mirror_dir, \
            SeaweedS3(public_read_buckets=(oi.BUCKET,)) as s3:
        metadata = build_mirror(s3, mirror_dir, SPLIT, quota + 10, seed=11)
        os.environ.update(mirror_environment(s3, metadata), FIFTYONE_DO_NOT_TRACK="true")
        rows = {"unsharded (one step)": median_run(lambda w: {"whole": timed(lambda: step(
            "whole", quota, out=os.path.join(w, "raw")))}, args.repeats)}
        for parallelism in (1, 3):
            rows[f"parallelism {parallelism}"] = median_run(
                lambda w, parallelism=parallelism: sharded(w, quota, parallelism), args.repeats)
    print(f"{len(CLASSES)} classes x {quota} images from the mirror at {s3.endpoint}, median of {args.repeats}")
    print(f"{'way':<22}{'plan s':>8}{'shards s':>10}{'merge s':>9}{'total s':>9}")
    for name, r in rows.items():
        print(f"{name:<22}{r.get('plan', 0):8.2f}{r.get('shards', r.get('whole', 0)):10.2f}{r.get('merge', 0):9.2f}"
              f"{sum(r.values()):9.2f}")
    unsharded, one, three = (sum(r.values()) for r in rows.values())
    print(f"shard overhead (parallelism 1 - unsharded): {one - unsharded:.2f} s")
    print(f"RESULT download_shards {one / three:.2f}")


if __name__ == "__main__":
    main()
