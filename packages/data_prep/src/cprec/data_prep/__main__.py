import sys

from cprec.core.cli import main

sys.exit(main(["data", *sys.argv[1:]]))
