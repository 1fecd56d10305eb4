"""namesmith's own errors: a user's mistake, said in one line with what to do about it.

The CLI prints any `NamesmithError` as a single line on stderr and exits with status 1; the web
server answers it with a 4xx and the same message. Anything else escaping is a bug in namesmith.
"""

from __future__ import annotations


class NamesmithError(Exception):
    """Base class of every error a user can cause (bad input, bad options, bad checkpoint).

    `field` names the parameter at fault, when there is one (`"max_len"`), as the Python API spells
    it, so that a caller can point at its own spelling of it: the CLI at its flag, a web server at
    its JSON field.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # noqa: ANN204 - keep `field` across pickling (e.g. from a worker process)
        return type(self), (str(self), self.field)


class DataError(NamesmithError):
    """A word list could not be read or is unusable."""


class ConfigError(NamesmithError):
    """An option or configuration value is invalid."""


class CheckpointError(NamesmithError):
    """A model directory is missing, corrupted, or from an incompatible version."""


class DistributedError(NamesmithError):
    """The ranks of a distributed run lost one another (one died, failed or hung past the timeout)."""
