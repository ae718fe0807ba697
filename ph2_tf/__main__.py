"""`python -m ph2_tf`: the command line (see `ph2_tf.cli`)."""

from ph2_tf.cli import main

raise SystemExit(main())
