"""namesmith: learn what words of a kind look like, one character at a time, and make more.

The Python API the `namesmith` command is built on:

    import namesmith
    words = namesmith.load_words("builtin")            # or a path to a word list
    result = namesmith.train("bigram", words=words, out="out")
    namesmith.sample(result.model, result.vocab, namesmith.SampleConfig(num=10, seed=0)).names
"""

__version__ = "0.1.0"

from namesmith.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from namesmith.config import TrainConfig  # noqa: E402
from namesmith.data import Corpus, DataConfig, load_words, split_words  # noqa: E402
from namesmith.errors import CheckpointError, ConfigError, DataError, NamesmithError  # noqa: E402
from namesmith.evaluate import evaluate  # noqa: E402
from namesmith.sample import SampleConfig, sample  # noqa: E402
from namesmith.train import TrainResult, train  # noqa: E402
from namesmith.vocab import Vocab  # noqa: E402

__all__ = [
    "Checkpoint", "CheckpointError", "ConfigError", "Corpus", "DataConfig", "DataError", "NamesmithError",
    "SampleConfig", "TrainConfig", "TrainResult", "Vocab", "evaluate", "load_checkpoint", "load_words",
    "sample", "save_checkpoint", "split_words", "train",
]
