"""The pipeline: its wiring, its compile options, each task's settings, the pipeline servers it is compiled for,
its run parameters and the compiled YAML."""
