"""namesmith's own errors: a user's mistake, said in one line with what to do about it.

The CLI prints any `NamesmithError` as a single line on stderr and exits with status 1;
anything else escaping is a bug in namesmith.
"""


class NamesmithError(Exception):
    """Base class of every error a user can cause (bad input, bad options, bad checkpoint)."""


class DataError(NamesmithError):
    """A word list could not be read or is unusable."""


class ConfigError(NamesmithError):
    """An option or configuration value is invalid."""


class CheckpointError(NamesmithError):
    """A model directory is missing, corrupted, or from an incompatible version."""
