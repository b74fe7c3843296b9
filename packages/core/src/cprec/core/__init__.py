"""Shared contracts of CPRec: the unified prompt template, the data schemas, configs and storage.

Every other package depends on this one and on nothing of each other's internals.
"""

from cprec.core.errors import CPRecError

__all__ = ["CPRecError"]
