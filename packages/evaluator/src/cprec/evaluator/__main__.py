"""`python -m cprec.evaluator ...` (for `ray job submit`) is `cprec eval ...`."""

import sys

from cprec.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
