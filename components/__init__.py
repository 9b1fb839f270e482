"""KFP components of the yolo-kfp pipeline.

Each module holds a plain-Python core (importable and testable without KFP) and a thin
``@dsl.component`` wrapper that imports that core inside the function, so the container image,
which carries this package, runs the same code as the tests.
"""
