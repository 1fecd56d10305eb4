"""namesmith: learn what words of a kind look like, one character at a time, and make more.

One object holds a trained model and answers every question about it:

    from namesmith import NameModel
    model = NameModel.train(data="builtin", model="ngram")       # or NameModel.load("out")
    model.generate(10, starts_with="ma", ends_with="a", seed=0).names
    model.score(["emma", "zzqx"])
"""

import os

# Torch's OpenMP threads spin while they wait for each other. When another process holds a core, a
# spinning thread waits for a partner that is not running, and code of many small tensor operations
# (fitting discounts, sampling) runs 10-15x slower (`namesmith train`: 41 s instead of 3 s beside one
# busy process on 2 cores). Waiting passively costs a quiet machine nothing measurable. Only takes
# effect if torch is not imported yet; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from namesmith.config import TrainConfig  # noqa: E402 (after the OpenMP setting above)
from namesmith.data import DataConfig, load_words
from namesmith.errors import CheckpointError, ConfigError, DataError, NamesmithError
from namesmith.namemodel import NameModel
from namesmith.version import __version__

__all__ = [
    "CheckpointError", "ConfigError", "DataConfig", "DataError", "NameModel", "NamesmithError", "TrainConfig",
    "__version__", "load_words",
]
