"""What Ultralytics 8.4.190 accepts, written down so that a run's values are checked without importing it.

The CLI (which may be a base install without Ultralytics) and the preflight step (in the data image)
check a run's training values against these before any work; ``tests/test_ultralytics_catalog.py``
re-derives each of them from the installed Ultralytics, so an upgrade that changes them fails there.
"""

# Every key of ultralytics/cfg/default.yaml: the arguments ``model.train(**args)`` takes.
ARGUMENTS = frozenset("""
task mode model data epochs time patience batch imgsz save save_period cache device workers project name exist_ok
pretrained cls_remap optimizer verbose seed deterministic single_cls rect cos_lr close_mosaic resume amp fraction
profile freeze multi_scale compile channels_last overlap_mask mask_ratio dropout val split save_json conf iou max_det
quantize dnn plots nms source vid_stride stream_buffer visualize augment agnostic_nms classes retina_masks embed show
save_frames save_txt save_conf save_crop show_labels show_conf show_boxes line_width format optimize dynamic simplify
opset workspace lr0 lrf momentum weight_decay warmup_epochs warmup_momentum warmup_bias_lr distill_model dis box cls
cls_pw dfl pose kobj rle angle dlog dgrad dlam nbs hsv_h hsv_s hsv_v degrees translate scale shear perspective flipud
fliplr bgr mosaic mixup cutmix copy_paste copy_paste_mode auto_augment erasing cfg tracker
""".split())

# ``BaseTrainer.build_optimizer``'s names (matched without regard to case).
OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop")

# Layers (``len(model.model)``) of the detection checkpoints Ultralytics publishes: ``freeze`` must stay below.
MODEL_LAYERS = {
    **{f"yolov5{s}u.pt": 25 for s in "nsmlx"},
    **{f"yolov5{s}6u.pt": 34 for s in "nsmlx"},
    **{f"yolov8{s}{suffix}.pt": 23 for s in "nsmlx" for suffix in ("", "-oiv7")},
    **{f"yolov9{s}.pt": 23 for s in "tsmc"}, "yolov9e.pt": 43,
    **{f"yolov10{s}.pt": 24 for s in "nsmblx"},
    **{f"yolo11{s}.pt": 24 for s in "nsmlx"},
    **{f"yolo12{s}.pt": 22 for s in "nsmlx"},
    **{f"yolo26{s}.pt": 24 for s in "nsmlx"},
    "yolov3u.pt": 29, "yolov3-sppu.pt": 29, "yolov3-tinyu.pt": 21,
}

# The argument types ``check_cfg`` (ultralytics/cfg/__init__.py) enforces when training starts: its
# CFG_FLOAT_KEYS, CFG_FRACTION_KEYS (0 to 1), CFG_INT_KEYS with CFG_INT_MIN, CFG_BOOL_KEYS and CFG_STR_KEYS.
FLOAT_KEYS = frozenset("""
angle batch box cls degrees dfl dgrad dis dlog kobj pose rle shear time warmup_epochs workspace
""".split())
FRACTION_KEYS = frozenset("""
bgr cls_pw conf copy_paste cutmix dlam dropout erasing fliplr flipud fraction hsv_h hsv_s hsv_v iou lr0 lrf mixup
momentum mosaic multi_scale perspective translate warmup_bias_lr warmup_momentum weight_decay
""".split())
INT_KEYS = frozenset("""
close_mosaic epochs line_width mask_ratio max_det nbs opset patience save_period seed vid_stride workers
""".split())
INT_MINIMUMS = {"epochs": 1, "patience": 0, "nbs": 1, "max_det": 1, "mask_ratio": 1, "vid_stride": 1, "seed": 0}
BOOL_KEYS = frozenset("""
agnostic_nms augment channels_last cls_remap cos_lr deterministic dnn dynamic exist_ok nms optimize overlap_mask plots
profile rect retina_masks save save_conf save_crop save_frames save_json save_txt show show_boxes show_conf show_labels
simplify single_cls stream_buffer val verbose visualize
""".split())
STR_KEYS = frozenset("copy_paste_mode optimizer split auto_augment".split())
# Typed arguments that may be null (unset): those whose default is null, and auto_augment.
NULLABLE_KEYS = frozenset("channels_last conf line_width nms opset time workspace auto_augment".split())
# ``amp``'s and ``quantize``'s spellings (QUANTIZE_ALIASES' keys, matched without regard to case).
AMP_VALUES = ("fp16", "bf16", "fp32")
QUANTIZE_VALUES = ("8", "16", "32", "int8", "fp16", "fp32", "w8a8", "w16a16", "w32a32", "w8a16", "w8a32")
