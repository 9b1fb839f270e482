"""KFP components of the yolo-kfp pipeline, one module per step.

Each is a thin ``@component`` wrapper (``step_settings.component``) that imports its library module
(``yolo_kfp.data``, ``yolo_kfp.model``, ``yolo_kfp.release``, ...) inside the function, so that the container
image, which carries this package, runs the same code as the tests.
"""
