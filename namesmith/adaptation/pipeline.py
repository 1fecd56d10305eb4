"""Training with a prior: a short list adapted onto a background model, in the training pipeline's place.

`train` is namesmith.training.train.train with this layer's rule added: where `choose_background`
says so ("auto" adapts an ngram of fewer than 1,000 training names onto the catalogue's prior, a model
directory always adapts; see namesmith.adaptation.adapt), the list the pipeline read is adapted
(`train_adapted`) instead of trained as usual, then evaluated on its split and saved like any other
model. The training pipeline knows no prior: it calls the adapter it is given (issue 28: imports flow
down, so adaptation, above training, plugs into it rather than being imported by it).
`adapt_words` adapts a list given in Python (NameModel.adapt, "more like these").
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import torch

from namesmith.adaptation.adapt import adapt, choose_background, describe_background
from namesmith.adaptation.background import adapted_vocab
from namesmith.core.config import TrainConfig
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.core.vocab import Vocab
from namesmith.data.words import Corpus, DataConfig, check_words
from namesmith.scoring.evaluate import evaluate_splits
from namesmith.scoring.open_vocabulary import UNKNOWN_CHAR_LOG_PROB
from namesmith.training.checkpoint import Checkpoint, check_writable, model_record, save_checkpoint
from namesmith.training.fitting import counting_threads
from namesmith.training.provenance import base_meta, data_record
from namesmith.training.train import train as train_pipeline


def train(model_type: str = "ngram", *args: Any, prior: str | Path | None = "auto",
          **options: Any) -> tuple[Checkpoint, Corpus | None]:
    """`namesmith.training.train.train`, a short list adapted onto `prior` where `choose_background` says so:
    "auto" (the default) adapts short lists of the model types that have a catalogue prior, "catalogue"
    and a model directory always adapt, "none" never does."""
    return train_pipeline(model_type, *args, prior=prior, **options,
                          adapter=functools.partial(adapt_if_chosen, model_type, prior))


def adapt_if_chosen(model_type: str, prior: str | Path | None, corpus: Corpus, record: dict[str, Any],
                    train_config: TrainConfig, model_config: dict[str, Any] | None, *, out: str | Path | None,
                    callback: TrainCallback | None, request: dict[str, Any], plain: bool,
                    device: torch.device) -> tuple[Checkpoint, Corpus] | None:
    """The list adapted onto the background `prior` chooses for it, or None where it chooses none
    (namesmith.training.train.Adapter)."""
    background = choose_background(prior, model_type, len(corpus.split.train), device=device, plain=plain)
    if background is None:
        return None
    return train_adapted(background, corpus, record, train_config, model_config, out=out, callback=callback,
                         request=request, prior=prior)


def train_adapted(background: Checkpoint, corpus: Corpus, record: dict[str, Any], train_config: TrainConfig,
                  model_config: dict[str, Any] | None, *, out: str | Path | None = None,
                  callback: TrainCallback | None = None, request: dict[str, Any] | None = None,
                  prior: str | Path | None = None, where: dict[str, Any] | None = None,
                  pull: float | None = None) -> tuple[Checkpoint, Corpus]:
    """A model of the corpus' training words adapted from `background` (namesmith.adaptation.adapt), evaluated
    on its split and saved like any other; `record` is its data record. Not resumable: the n-gram
    is closed-form and fine-tuning on a short list takes seconds. `where`: a conditional background's
    labels; `pull`: "more like these" (`adapt.more_like`), over the background's whole vocabulary
    (so its tables need no remapping). The list's own characters are recorded (`alphabet`): the model
    draws only those unless asked for the prior's letters (NameModel.generate)."""
    words = [w for part in corpus.split.parts().values() for w in part]
    alphabet = "".join(sorted(set("".join(words))))
    vocab = (adapted_vocab(words, background.vocab) if pull is None
             else Vocab.from_chars(set(background.vocab.chars) | set(alphabet)))
    corpus = Corpus(corpus.split, vocab)
    if out is not None:
        check_writable(out)

    def progress(step: int, loss: float) -> None:
        if callback:
            callback(step, step, {"loss": loss})

    start = time.perf_counter()
    with counting_threads(background.model):
        model, adaptation = adapt(corpus.split.train, corpus.vocab, background, model_config or {},
                                  seed=train_config.seed, callback=progress, where=where, pull=pull)
    adaptation.update(prior=describe_background(background, prior), alphabet=alphabet)
    if where:
        adaptation["where"] = {k: list(v) for k, v in background.model.condition.check_where(where).items()}
    history = TrainHistory(steps=adaptation.get("steps", 1), seconds=time.perf_counter() - start)
    meta = base_meta(record, train_config, train_config, model, request or {})
    with counting_threads(model):
        metrics = evaluate_splits(model, corpus)
    meta.update(model_record(model, corpus.vocab), metrics=metrics, history=history.to_dict(),
                complete=True, adaptation=adaptation, open_vocabulary={"unknown_char_log_prob": UNKNOWN_CHAR_LOG_PROB})
    if out is not None:
        save_checkpoint(out, model, corpus.vocab, meta)
    return Checkpoint(model, corpus.vocab, meta), corpus


def adapt_words(background: Checkpoint, words: list[str], casing: str, model_config: dict[str, Any] | None = None,
                *, seed: int = 1337, out: str | Path | None = None, where: dict[str, Any] | None = None,
                pull: float | None = None) -> tuple[Checkpoint, Corpus]:
    """A model of `words` (as the background reads them: `casing`) adapted from a trained model, all
    of them for training (namesmith.namemodel.NameModel.adapt, and "more like these" with `pull`:
    NameModel.more_like)."""
    words = check_words(words)
    corpus = Corpus.from_words(words, split=False)
    record = data_record(DataConfig(split=False), corpus, casing, words)
    return train_adapted(background, corpus, record, TrainConfig(seed=seed), model_config, out=out, where=where,
                         pull=pull)
