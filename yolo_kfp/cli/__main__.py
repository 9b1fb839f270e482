"""``python -m yolo_kfp.cli``: the ``yolo-kfp`` command without its script (the benchmarks run it so)."""

import sys

from yolo_kfp.cli import main

sys.exit(main())
