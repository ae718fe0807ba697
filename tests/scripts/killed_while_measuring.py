"""Child process for the publishing test: runs `ph2-seg` and SIGKILLs itself when a SavedModel's
test split is about to be measured, which publishing does only for a candidate it has chosen,
while writing its `metrics.json`: a kill in the middle of publishing a version.

Usage: python killed_while_measuring.py COMMAND [ARGS...]  (as after `ph2-seg`)
"""

import os
import signal
import sys

from ph2_tf import cli
from ph2_tf.evaluation import evaluate

measure_split = evaluate.evaluate_serving


def killed_before_the_test_split(serve, split="test", **kwargs):
    if split == "test":
        os.kill(os.getpid(), signal.SIGKILL)
    return measure_split(serve, split, **kwargs)


if __name__ == "__main__":
    evaluate.evaluate_serving = killed_before_the_test_split
    sys.exit(cli.main(sys.argv[1:]))
