"""`python -m cprec.trainer fit ...`: the entrypoint for `ray job submit`."""

import sys

from cprec.core.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
