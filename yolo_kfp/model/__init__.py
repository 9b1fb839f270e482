"""The model: training with Ultralytics, checkpoints, the search's trials and their report, MLflow tracking,
evaluation and the ONNX export.

torch, Ultralytics, OpenCV and MLflow are imported inside the functions that need them."""
