"""namesmith: learn what words of a kind look like, one character at a time, and make more.

The Python API the `namesmith` command is built on:

    import namesmith
    words = namesmith.load_words("builtin")            # or a path to a word list
    result = namesmith.train("bigram", words=words, out="out")
    namesmith.generate(result.model, result.vocab, namesmith.GenerateConfig(num=10, seed=0),
                       max_word_length=result.corpus.max_word_length).names
"""

__version__ = "0.1.0"

from namesmith.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from namesmith.config import TrainConfig  # noqa: E402
from namesmith.data import Corpus, DataConfig, load_words, split_words  # noqa: E402
from namesmith.errors import CheckpointError, ConfigError, DataError, NamesmithError  # noqa: E402
from namesmith.evaluate import evaluate  # noqa: E402
from namesmith.generate import GenerateConfig, Generation, generate, iter_generate  # noqa: E402
from namesmith.train import TrainResult, train  # noqa: E402
from namesmith.vocab import Vocab  # noqa: E402

__all__ = [
    "Checkpoint", "CheckpointError", "ConfigError", "Corpus", "DataConfig", "DataError", "GenerateConfig",
    "Generation", "NamesmithError", "TrainConfig", "TrainResult", "Vocab", "evaluate", "generate", "iter_generate",
    "load_checkpoint", "load_words", "save_checkpoint", "split_words", "train",
]
