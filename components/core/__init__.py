"""What the steps do, in plain Python: no KFP, and no heavy library (torch, Ultralytics, FiftyOne, OpenCV)
imported at module level. The components in ``components/`` call it inside their functions; the CLI's
``step`` commands, the demo, the tests and the benchmarks call it directly."""
