"""`python tuner_search.py`: the `tune` command (`ph2-seg tune`) as a script, same options.

The work is in `ph2_tf.cli.tune`; `python tuner_search.py --help` lists the options.
"""

from ph2_tf.cli import tune
from ph2_tf.cli.environment import set_up_command_line

if __name__ == "__main__":
    set_up_command_line()
    raise SystemExit(tune.main())
