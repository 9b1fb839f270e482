"""``predict``: an exported model's boxes on images, run here (``--model``) or asked of a served model
(``--url``). numpy and OpenCV are imported only here, as the base install has neither."""

import os
import sys

from yolo_kfp.cli.output import library_output_to_stderr, print_json
from yolo_kfp.params import run_parameters


def cmd_predict(args) -> None:
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("numpy", "cv2")):
        raise ValueError("predict needs numpy and OpenCV: pip install 'yolo-kfp[train]' (the base install has neither)")
    from yolo_kfp.cluster import predict, prediction_output

    predict.check_settings(conf=args.conf, nms_iou=args.iou, timeout=args.timeout)
    detect = _detector(args)
    images = predict.image_paths(args.images)
    if args.save:
        prediction_output.refuse_overwriting(images, args.save)
    with library_output_to_stderr():
        results = detect(images=images)
    if args.json:
        print_json(prediction_output.coco_results(images, results))
    else:
        _print_boxes(images, results)
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for path, detections, target in zip(images, results, prediction_output.annotated_paths(images, args.save),
                                            strict=True):
            prediction_output.draw_detections(path, detections, target)
        print(f"{len(images)} images with their boxes drawn in {args.save}", file=sys.stderr)


def _print_boxes(images: list[str], results: list) -> None:
    for path, detections in zip(images, results, strict=True):
        print(f"{path}: {len(detections)} boxes")
        for d in detections:
            print(f"  {d.name:<20} {d.confidence:.3f}  " + " ".join(f"{v:.1f}" for v in d.box))


def _detector(args):
    """Images -> detections per image, by ``--model`` here or the model at ``--url``; either is checked now."""
    import functools

    from yolo_kfp.cluster import predict
    from yolo_kfp.infra.urls import read_token_file

    settings = {name: value for name, value in (("conf", args.conf), ("nms_iou", args.iou)) if value is not None}
    if args.model:
        return functools.partial(predict.predict_local, model=predict.onnx_model(args.model), engine=args.engine,
                                 classes=args.classes, **settings)
    token = read_token_file(args.token_file) if args.token_file else args.token
    predict.check_url(args.url, token, args.allow_plain_http_token)
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    return functools.partial(predict.predict_remote, url=args.url,
                             names=args.classes or run_parameters.defaults()["classes"], token=token,
                             ca_bundle=args.ca_bundle, allow_plain_http_token=args.allow_plain_http_token, **settings)
