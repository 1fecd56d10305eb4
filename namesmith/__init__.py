"""namesmith: learn what words of a kind look like, one character at a time, and make more.

One object holds a trained model and answers every question about it:

    from namesmith import NameModel
    model = NameModel.train(data="builtin", model="ngram")       # or NameModel.load("out")
    model.generate(10, starts_with="ma", ends_with="a", seed=0).names
    model.score(["emma", "zzqx"])
"""

from namesmith.config import TrainConfig
from namesmith.data import DataConfig, load_words
from namesmith.errors import CheckpointError, ConfigError, DataError, NamesmithError
from namesmith.namemodel import NameModel
from namesmith.version import __version__

__all__ = [
    "CheckpointError", "ConfigError", "DataConfig", "DataError", "NameModel", "NamesmithError", "TrainConfig",
    "__version__", "load_words",
]
