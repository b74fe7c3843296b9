class CPRecError(Exception):
    """An error a user can act on: the `cprec` command prints it as one line, without a traceback."""
