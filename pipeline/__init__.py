"""The pipeline: its wiring, the pipeline servers it is compiled for, its run parameters and the compiled YAML."""
