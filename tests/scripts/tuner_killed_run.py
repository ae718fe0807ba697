"""Child process for the tuner resume test: a tiny `tune` run killed mid-seed.

Usage: python tuner_killed_run.py TUNE_ARGS...

Runs `ph2_tf.cli.tune` on the 32x32 profile of the tests, with every training run SIGKILLing its
process at the end of its first epoch (after that epoch's log row and backup are written),
like a preempted job.
"""

import dataclasses
import sys

from train_run import KillAfterEpochs

from ph2_tf.cli import tune
from ph2_tf.training import train
from ph2_tf.training.profiles import Profile

TINY = Profile(image_size=32, width=0.125, batch_size=2)


def main(argv):
    standard_callbacks = train.make_callbacks
    train.make_callbacks = lambda cfg, out_dir: [
        *standard_callbacks(cfg, out_dir),
        KillAfterEpochs(1),
    ]
    args = tune.standalone_parser().parse_args(argv)
    settings = dataclasses.replace(tune.settings_from_args(args), profile=TINY, verbose=0)
    tune.run_search(args, settings)


if __name__ == "__main__":
    main(sys.argv[1:])
