"""The download steps' KFP components: thin wrappers around ``yolo_kfp.data.download_plan``,
``download_fetch`` and ``download_merge``, and the one-step ``download`` over the same (``yolo_kfp.data.download``)."""

from kfp.dsl import Dataset, Input, Output

from yolo_kfp.components.step_settings import DATA_IMAGE, Resources, component
from yolo_kfp.infra.measured_memory import memory


# Streams the metadata CSVs (the train split's boxes are over 2 GB) a piece at a time, on both CPUs.
@component(DATA_IMAGE, timeout_hours=6, retries=3, data_connection=True,
           resources=Resources(cpu="1", cpu_limit="2", memory=memory("plan-download")))
def plan_download(classes: list, max_samples_per_class: int, split: str, seed: int, shard_size: int,
                  open_images_cache: str, plan: Output[Dataset]) -> list:
    """Selects up to max_samples_per_class Open Images V7 images per class and cuts them into shards of at
    most shard_size images; returns the shards' names.

    Writes the selected images' rows of Open Images' metadata (labels/detections.csv,
    metadata/{classes.csv,hierarchy.json,image_ids.csv}) and plan.json (each shard's image ids).
    open_images_cache (an S3 prefix, optional) keeps Open Images' metadata CSVs between runs.

    Args:
        shard_size: Images per shard at most.
        plan: The selection: Open Images' rows of the selected images and plan.json.
    """
    import logging

    from yolo_kfp.data.download_plan import make_plan

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    record = make_plan(plan_dir=plan.path, classes=list(classes), max_samples_per_class=max_samples_per_class,
                       split=split, seed=seed, shard_size=shard_size, metadata_cache=open_images_cache)
    plan.metadata.update({k: v for k, v in record.items() if k != "shards"})
    return list(record["shards"])


# Fetches only the images it lacks; FiftyOne's mongod runs in the pod.
@component(DATA_IMAGE, timeout_hours=12, retries=3,
           resources=Resources(cpu="1", cpu_limit="2", memory=memory("download-shard")))
def download_shard(plan: Input[Dataset], shard: str, raw_shard: Output[Dataset]):
    """Downloads the images of one shard of the plan from Open Images (FiftyOne's download code), packed
    into tar shards under data/. A retried step fetches only the images it does not have intact.

    Args:
        plan: The plan-download step's selection.
        shard: The name of the shard to fetch.
        raw_shard: The shard's images, packed in tar files under data/.
    """
    import logging

    from yolo_kfp.data.download_fetch import fetch_shard
    from yolo_kfp.infra.packing import pack_in_place

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    record = fetch_shard(plan_dir=plan.path, shard=shard, output_dir=raw_shard.path)
    pack_in_place(raw_shard.path, ("data",))
    raw_shard.metadata.update(record)


@component(DATA_IMAGE, timeout_hours=4, resources=Resources(cpu="500m", cpu_limit="1", memory=memory("merge-download")))
def merge_download(plan: Input[Dataset], shards: Input[list[Dataset]], raw_dataset: Output[Dataset]):
    """Joins the downloaded shards into one raw dataset in FiftyOne's OpenImagesV7Dataset layout.

    Holds only the selected images and their rows: labels/detections.csv,
    metadata/{classes.csv,hierarchy.json,image_ids.csv}, download.json, and data/*.jpg packed into tar
    shards. The same dataset whatever the number of shards.

    Args:
        plan: The plan-download step's selection.
        shards: Every shard's images.
        raw_dataset: The raw dataset in FiftyOne's OpenImagesV7Dataset layout.
    """
    import logging

    from yolo_kfp.data.download_merge import merge_shards
    from yolo_kfp.infra.packing import pack_in_place

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = merge_shards(plan_dir=plan.path, shard_dirs=[shard.path for shard in shards], output_dir=raw_dataset.path)
    pack_in_place(raw_dataset.path, ("data",))
    raw_dataset.metadata.update(summary)


# For servers without dsl.Collected (yolo_kfp.pipeline.servers): the three steps above in turn, in one pod, so
# its time and memory are theirs together.
@component(DATA_IMAGE, timeout_hours=22, retries=3, data_connection=True,
           resources=Resources(cpu="1", cpu_limit="2", memory=memory("plan-download", "download-shard",
                                                                      "merge-download")))
def download(classes: list, max_samples_per_class: int, split: str, seed: int, shard_size: int,
             open_images_cache: str, raw_dataset: Output[Dataset]):
    """Selects up to max_samples_per_class Open Images V7 images per class, downloads them a shard of at most
    shard_size images at a time (FiftyOne's download code) and joins them into one raw dataset in FiftyOne's
    OpenImagesV7Dataset layout: what plan-download, download-shard and merge-download write, in one step.

    Args:
        shard_size: Images fetched at a time at most.
        raw_dataset: The raw dataset in FiftyOne's OpenImagesV7Dataset layout.
    """
    import logging

    from yolo_kfp.data.download import download_in_turn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raw_dataset.metadata.update(download_in_turn(
        output_dir=raw_dataset.path, classes=list(classes), max_samples_per_class=max_samples_per_class, split=split,
        seed=seed, shard_size=shard_size, metadata_cache=open_images_cache))
