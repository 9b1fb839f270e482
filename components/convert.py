"""The convert step's KFP component: a thin wrapper around ``yolo_kfp.data.convert``."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from yolo_kfp.components.step_settings import DATA_IMAGE, Resources, component
from yolo_kfp.infra.measured_memory import memory


@component(DATA_IMAGE, timeout_hours=4, data_connection=True,
           resources=Resources(cpu="1", cpu_limit="2", memory=memory("convert")))
def convert(raw_dataset: Input[Dataset], classes: list, seed: int, split_ratios: list, include_group_of: bool,
            extra_data: str, extra_data_fingerprint: str, extra_data_format: str, class_map: dict,
            allow_missing_classes: bool, dataset: Output[Dataset], dataset_stats: Output[Artifact],
            dataset_report: Output[Markdown]):
    """Converts an Open Images V7 raw dataset to a YOLO dataset split train/val/test with a seed.

    Keeps every box of the selected classes (exact display names, ids in the listed order), clamps
    boxes to the image, drops images without one and unreadable images, fails on a class without
    boxes unless allow_missing_classes, merges the user's own labelled exports under extra_data (an
    S3 prefix: COCO, Pascal VOC, CVAT for images, YOLO or Open Images, their names mapped by
    class_map; extra_data_fingerprint keys the cache), refusing a bad export in one line per problem
    before it writes anything, and writes dataset.yaml (Ultralytics), images and labels packed in tar
    shards, stats.json, and a report: images and boxes per class and split and per source, box
    sizes, images and boxes dropped and why.

    Args:
        raw_dataset: The downloaded Open Images subset.
        extra_data_fingerprint: Fingerprint of the objects under extra_data (from preflight): keys the cache.
        dataset: The YOLO dataset: dataset.yaml, images and labels (in tar shards), stats.json.
        dataset_stats: stats.json: images and boxes per class and split, and what was dropped.
        dataset_report: The same as a Markdown report.
    """
    import logging
    import shutil
    import tempfile

    from yolo_kfp.data.convert import convert_to_yolo, dataset_markdown, source_summaries
    from yolo_kfp.infra.packing import materialized, pack_in_place
    from yolo_kfp.infra.storage import S3Url, Storage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.info("extra_data %r, fingerprint %r", extra_data, extra_data_fingerprint)
    with materialized(raw_dataset.path) as raw, tempfile.TemporaryDirectory() as extra_dir:
        if extra_data:
            Storage.from_env().download_prefix(S3Url.parse(extra_data), extra_dir)
        stats = convert_to_yolo(raw_dir=raw, output_dir=dataset.path, classes=list(classes), seed=seed,
                                split_ratios=tuple(split_ratios), include_group_of=include_group_of,
                                extra_dirs=(extra_dir,) if extra_data else (),
                                extra_names=(extra_data,) if extra_data else (), extra_data_format=extra_data_format,
                                class_map=dict(class_map), allow_missing_classes=allow_missing_classes)
    pack_in_place(dataset.path, ("images", "labels"))
    shutil.copyfile(f"{dataset.path}/stats.json", dataset_stats.path)
    with open(dataset_report.path, "w") as f:
        f.write(dataset_markdown(stats))
    dataset.metadata.update({"images": stats["images"], "boxes": stats["boxes"], "seconds": stats["seconds"],
                             "split_images": {s: stats["splits"][s]["images"] for s in stats["splits"]},
                             "sources": source_summaries(stats)})
