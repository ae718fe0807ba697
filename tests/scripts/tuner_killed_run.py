"""Child process for the tuner resume test: a tiny `tuner_search` run killed mid-seed.

Usage: python tuner_killed_run.py TUNER_SEARCH_ARGS...

Runs `tuner_search` on the 32x32 profile of the tests, with every training run SIGKILLing its
process at the end of its first epoch (after that epoch's log row and backup are written),
like a preempted job.
"""

import dataclasses
import sys

from train_run import KillAfterEpochs

import tuner_search
from ph2_tf.training import train
from ph2_tf.training.profiles import Profile

TINY = Profile(image_size=32, width=0.125, batch_size=2)


def main(argv):
    standard_callbacks = train.make_callbacks
    train.make_callbacks = lambda cfg, out_dir: [
        *standard_callbacks(cfg, out_dir),
        KillAfterEpochs(1),
    ]
    args = tuner_search.parse_args(argv)
    settings = dataclasses.replace(tuner_search.settings_from_args(args), profile=TINY, verbose=0)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    tuner_search.run(args, settings)


if __name__ == "__main__":
    main(sys.argv[1:])
