"""The small exception hierarchy that library code raises and the CLI turns into one line.

Every error carries a message written for the person at the keyboard: what is wrong and what
to do about it. Library code never prints or exits; ``advisor.cli`` maps these classes to exit
codes and, with ``--debug``, shows the traceback.
"""

from __future__ import annotations


class GreenladderError(Exception):
    """Base class of every error a user can cause and fix."""

    #: process exit code the CLI uses for this class of error
    exit_code: int = 2


class ConfigError(GreenladderError):
    """A configuration file, override or flag is invalid (unknown key, wrong type, impossible value)."""


class DataError(GreenladderError):
    """The dataset cannot be used as given (missing file or column, single class, empty texts ...)."""


class ModelError(GreenladderError):
    """A model cannot be found, fetched, verified or loaded."""


class BudgetError(GreenladderError):
    """A compute budget was exhausted or cannot be honoured."""

    exit_code = 3


class RunDirError(GreenladderError):
    """The run directory cannot be used (not writable, locked by another process, disk full)."""
