"""Exceptions that mean "the input was wrong", as opposed to a bug.

Everything the user can get wrong (an unknown myth id, a bad ``--set`` value, a
missing dataset offline, a malformed expression, mismatched shapes) raises a
subclass of :class:`UserError`. The command line turns these into one line on
stderr and exit code 2; library users catch them like any ``ValueError``.
"""
from __future__ import annotations


class UserError(ValueError):
    """Base class of errors caused by input, never by a bug in mlmyths."""


class ConfigError(UserError):
    """An unknown configuration key, a value of the wrong type, or an unknown scale."""


class DataError(UserError):
    """A dataset that cannot be found, fetched or read (missing, corrupt, truncated)."""


class MissingDependency(UserError, ImportError):
    """An optional package that a feature needs is not installed (or does not import).

    Also an :class:`ImportError`, so code that guards optional imports the usual way catches it.
    """
