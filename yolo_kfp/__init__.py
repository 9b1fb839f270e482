"""yolo-kfp: a Kubeflow Pipelines v2 workflow that trains a YOLOv5 detector on an Open Images subset.

One package of rooms, each in its own folder at the repository's top (pyproject.toml maps them):
``components`` (each step's KFP component) over ``components.core`` (what the steps do, in plain Python),
``pipeline`` (the wiring, the server targets it compiles for, the run parameters), ``cluster`` (a pipeline
server's client: submit, upload, schedule, from a workbench too), ``local`` (the kfp.local runner and its
demo harness), and ``cli`` (the ``yolo-kfp`` command over them all).
"""

__version__ = "0.1.0"  # pyproject.toml reads it
