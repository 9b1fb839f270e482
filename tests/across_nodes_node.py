"""One node of a training across nodes, as the tests start it under ``torchrun``: ``train_yolo`` on this
node's copy of the dataset into this node's output folder, recording after every epoch what this rank
holds and loaded (``<record dir>/rank-<rank>.jsonl``: the epoch, a digest of the model's parameters and the
training images of the epoch's shard). With ``checkpoints`` (an ``s3://`` place), rank 0 claims it and keeps
every epoch's checkpoint there, polling often (a test's epochs take a second); ``epoch_pause`` seconds after
each epoch on rank 0 give that copy, a thread beside the training, time to be made.

    torchrun --nnodes 2 --nproc-per-node 1 --node-rank R ... tests/across_nodes_node.py SETTINGS_JSON
"""

import hashlib
import json
import os
import sys
import time


def record(trainer) -> None:
    from ultralytics.utils.torch_utils import unwrap_model

    digest = hashlib.sha256()
    for parameter in unwrap_model(trainer.model).parameters():
        digest.update(parameter.detach().cpu().numpy().tobytes())
    loader = trainer.train_loader
    images = sorted(os.path.basename(loader.dataset.im_files[i]) for i in loader.sampler)
    line = {"epoch": trainer.epoch, "weights": digest.hexdigest(), "images": images}
    with open(os.path.join(SETTINGS["record_dir"], f"rank-{os.environ['RANK']}.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")
    if os.environ["RANK"] == "0":
        time.sleep(SETTINGS.get("epoch_pause", 0))


SETTINGS = json.loads(sys.argv[1])

if __name__ == "__main__":
    import logging

    from ultralytics.utils.callbacks import base

    from yolo_kfp.model import checkpoints
    from yolo_kfp.model.train import train_yolo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base.default_callbacks["on_train_epoch_end"].append(record)
    checkpoints.CHECKPOINT_POLL_SECONDS, checkpoints.SETTLE_SECONDS = 0.3, 0.1
    kept = None
    if SETTINGS.get("checkpoints") and os.environ["RANK"] == "0":
        kept = checkpoints.Checkpoints(SETTINGS["checkpoints"]).claim()
    node = int(os.environ["GROUP_RANK"])  # torchrun's node rank
    train_yolo(data_dir=SETTINGS["data_dirs"][node], output_dir=SETTINGS["output_dirs"][node], checkpoints=kept,
               **SETTINGS["training"])
