"""The ``yolo-kfp`` command of the environment the tests run in, for tests that run it as a user would."""

import os
import sys

CLI = os.path.join(os.path.dirname(sys.executable), "yolo-kfp")
