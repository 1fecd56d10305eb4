"""Building a model of a type and fitting it on words in memory, then calibrating and evaluating it.

The one place where training defaults are resolved (`resolve_train_config`). A model is built from its type
and options (`build_model`), made conditional on a table's labels where that applies (`condition_model`), and
fitted (`fit_model`): count models fit themselves, on one thread (`one_thread`), neural models are trained
by namesmith.training.trainer. A plain n-gram whose (contexts, V) table would pass DENSE_CELLS is held
sparsely instead (`fit_ngram_counts`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any

import torch

from namesmith.core.config import TrainConfig
from namesmith.core.errors import ConfigError, NamesmithError
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.core.memory import check_fits, large_arrays_mapped, release_freed_memory, training_bytes
from namesmith.core.progress import Phase
from namesmith.core.threads import one_thread
from namesmith.data.labelled import LabelledCorpus
from namesmith.data.ngram_keys import NGramCounts, distinct_contexts, held_out_every
from namesmith.data.words import Corpus, DataConfig
from namesmith.generation.config import length_limit
from namesmith.models import model_class
from namesmith.models.base import CharModel
from namesmith.models.conditional_counts import DENSE_CELLS, ConditionalCounts, ConditionalCountsConfig
from namesmith.models.conditional_network import DEFAULT_LABEL_DROPOUT, ConditionalNetwork
from namesmith.models.kneser_ney import continuation_counts, fitted_discounts
from namesmith.models.ngram import NGram
from namesmith.models.nll import mean_nll
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.models.weighted_kn import sparse_table
from namesmith.scoring.evaluate import evaluate_labelled, evaluate_splits
from namesmith.training.calibrate import CalibrationReport, calibrate
from namesmith.training.calibrate_labels import calibrate_labels
from namesmith.training.distributed import World
from namesmith.training.distributed_trainer import DistributedTrainer
from namesmith.training.trainer import Trainer

log = logging.getLogger("namesmith")


def resolve_train_config(model: CharModel, config: TrainConfig) -> TrainConfig:
    """`config` with every unset field filled from the model type's defaults (the one place this happens)."""
    return config.with_defaults(model.train_defaults(config))


def build_model(model_type: str, vocab_size: int, overrides: dict[str, Any] | None = None,
                corpus: Corpus | None = None) -> CharModel:
    """A fresh model; `overrides` are its config fields (unknown ones are a ConfigError)."""
    cls = model_class(model_type)
    if cls.wrapper:
        raise ConfigError(f"model {model_type!r} is built from trained models, not trained by itself", field="model")
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    for name in overrides:
        if name not in known:
            raise ConfigError(f"{name} does not apply to model {model_type} "
                              f"(its options: {', '.join(sorted(known)) or 'none'})", field=name)
    try:
        config = cls.make_config(overrides, corpus)
    except TypeError as e:
        raise ConfigError(f"model {model_type}: {e}", field="model") from None
    return cls(vocab_size, config)


def check_training_memory(model_type: str, model_config: dict[str, Any] | None, corpus: Corpus,
                          config: TrainConfig, data: DataConfig) -> None:
    """Refuse, before building the model and its tensors, training whose estimate (namesmith.core.memory) would
    not fit: long names (a raised --max-line-length) or a network too large for the list."""
    cls = model_class(model_type)
    try:
        model_options = cls.make_config(dict(model_config or {}), corpus)
    except (TypeError, NamesmithError):
        return  # building the model reports the problem
    n_words = sum(len(words) for words in corpus.split.parts().values())
    longest = corpus.max_word_length
    estimate = training_bytes(model_type, model_options, n_words, longest, corpus.vocab.size,
                              config.batch_size or cls.default_train_config.get("batch_size"))
    if longest > DataConfig.max_line_length and data.max_line_length > DataConfig.max_line_length:
        option, advice = "--max-line-length", f"lower it: the longest name kept has {longest:,} characters"
    elif cls.neural:
        option, advice = "--model", f"{model_type} on {n_words:,} names: use fewer or shorter names, or a smaller batch"
    else:
        option, advice = None, "use fewer or shorter names"
    check_fits(estimate, f"training {model_type} on names of up to {longest:,} characters", advice, option)


def condition_model(model: CharModel, corpus: Corpus, config: TrainConfig) -> CharModel:
    """`model` made conditional on the corpus's labels (and count models weighted), where that applies.

    Count models on a conditioned or weighted table become `ConditionalCounts` of their type;
    neural models on a conditioned one a `ConditionalNetwork` (weights reach them through the
    trainer's draws). Plain word lists, and unconditioned, unweighted tables, keep the model as is.
    """
    if not isinstance(corpus, LabelledCorpus) or model.wrapper:
        return model
    if model.neural:
        if not corpus.conditioned:
            return model
        dropout = DEFAULT_LABEL_DROPOUT if config.label_dropout is None else config.label_dropout
        return ConditionalNetwork(model, corpus.condition, dropout)
    if not corpus.conditioned and corpus.row_weights("train") is None:
        return model  # every row weighs the same: the model's own fitting
    config_record = ConditionalCountsConfig(model.model_type, model.config_dict(), corpus.condition.to_dict())
    return ConditionalCounts(model.vocab_size, config_record)


def unwrap(model: CharModel) -> CharModel:
    """A weighted count model without labels is saved as its plain type: its pooled component."""
    if isinstance(model, ConditionalCounts) and not model.labels:
        return model.component(0)
    return model


def mix_ngram(corpus: Corpus, order: int) -> CharModel | None:
    """The n-gram a neural model is mixed with, fitted here for tables (conditioned and weighted as the
    network), or None for plain word lists (the mix counts its own)."""
    if not isinstance(corpus, LabelledCorpus) or (not corpus.conditioned and corpus.row_weights("train") is None):
        return None
    config = ConditionalCountsConfig("ngram", {"order": order}, corpus.condition.to_dict())
    ngram = ConditionalCounts(corpus.vocab.size, config)
    ngram.fit(corpus, TrainConfig())
    return unwrap(ngram)


def fit_model(model: CharModel, corpus: Corpus, config: TrainConfig, callback: TrainCallback | None = None, *,
              resume: dict[str, Any] | None = None, on_checkpoint: Any = None, world: World | None = None,
              teacher: CharModel | None = None) -> TrainHistory:
    """Fit `model` (on its device) on the corpus' train split: by itself, or with the gradient trainer
    (as one rank of `world`, when given: see namesmith.training.distributed), taught by `teacher` if given
    (namesmith.training.distill)."""
    config = resolve_train_config(model, config)
    if model.neural and world is not None:
        return DistributedTrainer(model, corpus, config, callback, on_checkpoint, teacher, world=world).fit(resume)
    if model.neural:
        return Trainer(model, corpus, config, callback, on_checkpoint, teacher).fit(resume)
    with one_thread():
        return model.fit(corpus, config, callback, resume=resume, on_checkpoint=on_checkpoint)


def counting_threads(model: CharModel) -> contextlib.AbstractContextManager[None]:
    """`one_thread` for a count model's fitting, calibration and evaluation; a network's threads as they are."""
    return contextlib.nullcontext() if model.neural else one_thread()


def fit_ngram_counts(model: NGram, train: NGramCounts, held_out: NGramCounts | None) -> CharModel:
    """`model` fitted from counts; or, where its (contexts, V) table would pass DENSE_CELLS (a long list of
    distinct names: 7M random ones have 10M contexts, a 1 GB table), the same interpolated Kneser-Ney
    model held sparsely: a `SparseNGram` of one back-off table (namesmith.models.sparse_ngram), which
    samples and scores alike but is no finite chain for exact constraints.

    The sparse fit holds one set of per-order counts at a time (the discounts' first, then the table's,
    consumed as the table is written), beside the counts it was given."""
    B = model.base
    contexts = distinct_contexts(train.keys, B)  # the top order's: the others' are fewer (see below)
    if contexts * model.vocab_size <= DENSE_CELLS:
        contexts = sum(distinct_contexts(keys, B) for keys in continuation_counts(train)[0])  # every order's
    if contexts * model.vocab_size <= DENSE_CELLS:
        model.fit_counts(train, held_out)
        return model
    log.info(f"the n-gram has at least {contexts:,} contexts × {model.vocab_size:,} tokens: held sparsely (its dense "
             f"table would take {contexts * model.vocab_size * 4 / 1e9:,.1f} GB or more)")
    with large_arrays_mapped():  # their work, freed, goes back to the system
        discounts = fitted_discounts(train, held_out, model.config.discount)
        orders = Phase("building the n-gram's tables: their orders", model.config.order - 1, "orders")
        by_order = continuation_counts(train, orders.advance)
        phase = Phase("building the n-gram's tables", sum(len(keys) for keys in by_order[0]), "n-grams")
        table = sparse_table(None, discounts.double(), by_order, vocab_size=model.vocab_size,
                             progress=phase.advance)
        del by_order
    release_freed_memory()
    return SparseNGram.from_tables(model.vocab_size, model.config.order, [], [table]).eval()


def fit_ngram(model: NGram, corpus: Corpus, config: TrainConfig, callback: TrainCallback | None
               ) -> tuple[CharModel, TrainHistory]:
    """A plain n-gram on words in memory: `fit_model`, unless its dense table would be too large
    (`fit_ngram_counts`: then the model returned is sparse)."""
    start = time.perf_counter()
    with one_thread():
        x, y = corpus.tensors("train")
        counts = model.count(x, y)
        B = model.base
        contexts = sum(len(torch.unique(counts.keys % B**k // B)) for k in range(1, model.config.order + 1))
        if contexts * model.vocab_size <= DENSE_CELLS:
            return model, fit_model(model, corpus, config, callback)
        every = held_out_every(len(x))
        held_out = model.count(x[::every], y[::every]) if model.config.discount == "tuned" else None
        fitted = fit_ngram_counts(model, counts, held_out)
        history = TrainHistory(steps=1)
        history.seconds = time.perf_counter() - start
        metrics = {}
        if corpus.words("val"):
            metrics["val_loss"] = mean_nll(fitted, *corpus.tensors("val"))
            history.val_loss.append((1, history.seconds, metrics["val_loss"]))
    if callback:
        callback(1, 1, metrics)
    return fitted, history


def calibrate_model(model: CharModel, corpus: Corpus, choice: str, seed: int) -> dict[str, Any]:
    """Fit the whole-name calibration `choice` asks for (namesmith.training.calibrate) and set it on the model (None
    where it is not kept); what was tried and chosen, for the model directory. A conditional count model
    gets a calibration per label node (namesmith.training.calibrate_labels)."""
    max_len = length_limit(model, None, corpus.max_word_length)
    started = time.perf_counter()
    if model.labels:
        if not isinstance(model, ConditionalCounts):
            raise ConfigError(f"calibrate: conditional {model.model_type} models are not calibrated (conditional "
                              "count models are)", field="calibrate")
        calibrations, report = calibrate_labels(model, corpus, choice=choice, max_len=max_len, seed=seed)
        model.set_label_calibrations(calibrations)
        calibration = calibrations
    else:
        calibration, report = calibrate(model, corpus.vocab, corpus.words("train"), corpus.words("val"),
                                        choice=choice, max_len=max_len, seed=seed)
        model.calibration = calibration
    log_calibrated(calibration, report, started)
    return report.to_dict()


def log_calibrated(calibration: Any, report: CalibrationReport, started: float) -> None:
    if calibration is not None:
        log.info(f"calibrated ({report.choice}, {report.method}) in {time.perf_counter() - started:.1f} s: "
                 f"validation NLL {report.validation.get('none', float('nan')):.4f} -> "
                 f"{report.validation.get(report.choice, 0):.4f}")


def evaluate_corpus(model: CharModel, corpus: Corpus) -> dict[str, dict[str, Any]]:
    """Train/val/test metrics: per row and per count for tables, as `evaluate_splits` for word lists."""
    if isinstance(corpus, LabelledCorpus):
        return evaluate_labelled(model, corpus)
    return evaluate_splits(model, corpus)
