"""The export step's KFP component: a thin wrapper around ``yolo_kfp.model.export``."""

from kfp.dsl import Dataset, Input, Model, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, Resources, component


@component(TRAIN_IMAGE, timeout_hours=2, resources=Resources(cpu="1", cpu_limit="2", memory="4Gi"))
def export(model: Input[Model], dataset: Input[Dataset], imgsz: int, onnx_model: Output[Model]):
    """Exports the trained model to ONNX (fixed image size, opset recorded, class names in its metadata)
    as yolo-kfp/1/model.onnx, the layout OpenVINO Model Server and KServe read, after checking with
    onnxruntime that its detections on test images match the PyTorch model's.

    Args:
        model: The train step's model.
        dataset: The YOLO dataset (test images check the export).
        onnx_model: yolo-kfp/1/model.onnx and export.json.
    """
    import logging
    import os

    from yolo_kfp.infra.packing import materialized
    from yolo_kfp.model.evaluate import held_out_images
    from yolo_kfp.model.export import export_onnx

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with materialized(dataset.path) as data_dir:
        info = export_onnx(weights=os.path.join(model.path, "weights", "best.pt"), output_dir=onnx_model.path,
                           imgsz=imgsz,
                           check_images=held_out_images(data_dir)[:16])
    onnx_model.metadata.update(info)
    onnx_model.metadata["framework"] = "onnx"
