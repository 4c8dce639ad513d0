"""The errors that mean "the input is at fault": the CLI prints them as one line and exits 2.

Anything else that escapes a command is a bug in gaitrec and keeps its traceback. Raise the most specific
class, with the file, key or value at fault and what to do about it in the message.
"""
from __future__ import annotations


class UserError(ValueError):
    """Base: a problem a person has to fix in a file, a config or a command line.

    A ``ValueError`` so that callers written against plain ``ValueError`` keep working.
    """


class ConfigError(UserError):
    """A problem in a configuration or in a command-line value."""


class DataError(UserError):
    """A dataset, sequence, features or checkpoint file that is missing, corrupt, hostile or malformed."""


class RunError(UserError):
    """A run cannot start or go on as asked (a run directory owned by another run, a lock held, a diverged loss)."""
