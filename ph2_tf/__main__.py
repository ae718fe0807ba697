"""`python -m ph2_tf`: the command line (see `ph2_tf.cli`)."""

from ph2_tf.cli import main
from ph2_tf.cli.environment import set_up_command_line

set_up_command_line()
raise SystemExit(main())
