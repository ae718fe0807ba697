"""Child process for the tuner resume tests: a tiny `tune` run killed mid-way, like a preempted job.

Usage: python tuner_killed_run.py KILL_AT TUNE_ARGS...

Runs `ph2_tf.cli.tune` on the 32x32 profile of the tests and SIGKILLs its process at KILL_AT:

- `first-epoch`: at the end of the first epoch of the first seed that trains, once that epoch's
  log row and backup are written;
- `scoring`: as the first seed's scoring begins, once its final weights are saved.
"""

import dataclasses
import os
import signal
import sys

from train_run import KillAfterEpochs

from ph2_tf.cli import tune
from ph2_tf.evaluation import evaluate
from ph2_tf.training import train
from ph2_tf.training.profiles import Profile

TINY = Profile(image_size=32, width=0.125, batch_size=2)


def kill_at_first_epoch():
    standard_callbacks = train.make_callbacks
    train.make_callbacks = lambda cfg, out_dir: [
        *standard_callbacks(cfg, out_dir),
        KillAfterEpochs(1),
    ]


def kill_at_scoring():
    evaluate.evaluate = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)


def main(kill_at, *argv):
    {"first-epoch": kill_at_first_epoch, "scoring": kill_at_scoring}[kill_at]()
    args = tune.standalone_parser().parse_args(argv)
    settings = dataclasses.replace(tune.settings_from_args(args), profile=TINY, verbose=0)
    tune.run_search(args, settings)


if __name__ == "__main__":
    main(*sys.argv[1:])
