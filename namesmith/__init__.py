"""namesmith: learn what words of a kind look like, one character at a time, and make more.

One object holds a trained model and answers every question about it:

    from namesmith import NameModel
    model = NameModel.train(data="builtin", model="ngram")       # or NameModel.load("out")
    model.generate(10, starts_with="ma", ends_with="a", seed=0).names
    model.score(["emma", "zzqx"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError, DataError, NamesmithError

if TYPE_CHECKING:
    from namesmith.core.version import __version__
    from namesmith.data.words import DataConfig, load_words
    from namesmith.namemodel import NameModel

# Imported on first use (PEP 562): `import namesmith` and `namesmith --help` need neither torch nor the models
# (nor importlib.metadata, for the version), so they start in a fraction of the time torch takes to import.
_LAZY = {"DataConfig": "namesmith.data.words", "load_words": "namesmith.data.words", "NameModel": "namesmith.namemodel",
         "__version__": "namesmith.core.version"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'namesmith' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


__all__ = [
    "CheckpointError", "ConfigError", "DataConfig", "DataError", "NameModel", "NamesmithError", "TrainConfig",
    "__version__", "load_words",
]
