"""yolo-kfp: a Kubeflow Pipelines v2 workflow that trains a YOLOv5 detector on an Open Images subset.

The library's rooms, lowest first (a room imports only rooms below it; tests/test_architecture.py holds it):
``infra`` (S3, shards, URLs, TLS, pod resources), ``params`` (the run parameters' table, their checks and the
preflight step), ``data`` (download and conversion), ``model`` (training, search trials, MLflow tracking,
evaluation, export), ``release`` (gate, publication, Model Registry). Over them: ``components`` (each step's KFP
component) and ``pipeline`` (the wiring and the server targets it compiles for), folders at the repository's top
that pyproject.toml maps into this package; ``cluster`` (a pipeline server's client: submit, upload, schedule;
predict with an exported or a served model), ``local`` (the kfp.local runner and its demo harness) and ``cli``.
"""

__version__ = "0.1.0"  # pyproject.toml reads it
