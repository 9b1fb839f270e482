"""The dataset: Open Images' layout, the sharded download, and the conversion to YOLO."""
