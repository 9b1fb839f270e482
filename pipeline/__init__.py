"""The yolo-kfp pipeline: its definition, compiler, CLI and local runner."""
