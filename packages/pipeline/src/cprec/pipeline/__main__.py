"""`python -m cprec.pipeline run ...` / `python -m cprec.pipeline tune ...` (what `ray job submit` runs)."""

import sys

from cprec.core.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
