"""The pipeline: its wiring (its run parameters made from the table in ``yolo_kfp.params.run_parameters``), its
compile options, each task's settings, the pipeline servers it is compiled for and the compiled YAML."""
