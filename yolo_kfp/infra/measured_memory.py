"""Peak memory of the data steps, measured at scale: their pods' memory defaults come from these.

Each figure is the peak resident memory (GiB, rounded up) of the step's process tree in the worst case
measured on the project's CPU machine, kept in the same table in ``bench/README.md`` (*data step memory*):
``bench/metadata_scale.py`` for the download steps on Open Images V7's train metadata at its real size
(30 classes x 3,000 images: 84,570 images in 85 shards), ``bench/convert_scale.py`` for convert (100,000
images). A pod's memory request and limit are the peak times ``HEADROOM``, rounded up to 512 MiB, and
``MINIMUM_MIB`` at least (the Python of a data step with pandas, pyarrow or FiftyOne imported is 0.1-0.4 GiB
before any data; extra_data and larger selections than measured need room). A larger run may need more:
``yolo-kfp compile --step-resources``.
"""

import math

PEAK_GIB = {
    "plan-download": 0.86,  # with FiftyOne imported, as on a first run (it fetches the metadata); 0.60 without
    "download-shard": 0.45,  # 1,000 images through FiftyOne's download code, then packed
    "merge-download": 0.13,  # the 85 shards' tar files carried over, the plan's rows and images checked
    "convert": 0.31,  # the whole step: the packed raw dataset unpacked, converted, packed
}
HEADROOM = 1.5
MINIMUM_MIB = 1024


def memory(*steps: str) -> str:
    """A step's memory request and limit: its measured peak times ``HEADROOM`` in whole 512 MiB, 1 GiB at least.
    Several steps run in turn in one process: their peaks added (a process need not give freed memory back)."""
    mib = max(MINIMUM_MIB, math.ceil(sum(PEAK_GIB[step] for step in steps) * HEADROOM * 2) * 512)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"
