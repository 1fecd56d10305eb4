"""Training a model of any type on a word list: data → split → model → fit → evaluate → save.

`train()` is what `NameModel.train` and `namesmith train` run. Models that are not `neural` fit
themselves (`CharModel.fit`: count models count, the seed's bigram runs its own descent); neural
models are trained by namesmith.training.trainer, chosen here. Large word lists are streamed to models that
learn from pair counts alone. This module wires data, configs, devices, evaluation and
checkpoints together, and is the one place where training defaults are resolved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from namesmith.core.casing import folds
from namesmith.core.config import TrainConfig
from namesmith.core.device import resolve_device
from namesmith.core.errors import CheckpointError, ConfigError, NamesmithError
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.core.memory import (
    IN_MEMORY_BYTES,
    IN_MEMORY_SECONDS,
    check_fits,
    in_memory_cost,
    in_words,
    large_arrays_mapped,
    memory_limit,
    release_freed_memory,
    training_bytes,
    words_in_memory,
)
from namesmith.core.progress import Phase
from namesmith.core.version import __version__
from namesmith.core.vocab import Vocab
from namesmith.data.counting import PARTS, count_file, count_ngrams_file, count_pairs_file, scan_file
from namesmith.data.labelled import LabelledCorpus, labelled_corpus
from namesmith.data.ngram_keys import NGramCounts, check_order, default_order, held_out_every
from namesmith.data.sources import is_catalogue, is_table_file, read_labelled_source, read_source, source_fingerprint
from namesmith.data.tables import WEIGHTINGS
from namesmith.data.words import (
    Corpus,
    DataConfig,
    check_words,
    fingerprint,
    prepare_words,
    split_words,
    words_fingerprint,
)
from namesmith.generation.config import length_limit
from namesmith.models import model_class
from namesmith.models.base import CharModel
from namesmith.models.conditional_counts import DENSE_CELLS, ConditionalCounts, ConditionalCountsConfig
from namesmith.models.conditional_network import DEFAULT_LABEL_DROPOUT, ConditionalNetwork
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.ngram_mix import mix_with_ngram
from namesmith.models.nll import mean_nll
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.models.weighted_kn import distinct_contexts, sparse_table
from namesmith.scoring.evaluate import (
    count_metrics,
    evaluate_labelled,
    evaluate_splits,
    ngram_count_metrics,
    tilted_count_metrics,
)
from namesmith.training.calibrate import CalibrationReport, calibrate, calibrate_counted, calibrate_labels
from namesmith.training.checkpoint import (
    META_FILE,
    Checkpoint,
    check_writable,
    load_checkpoint,
    model_record,
    one_writer,
    read_meta,
    save_checkpoint,
)
from namesmith.training.distill import teacher_record
from namesmith.training.distributed import World, active, launched
from namesmith.training.distributed import setup as setup_distributed
from namesmith.training.trainer import DistributedTrainer, Trainer

log = logging.getLogger("namesmith")

GIVEN_WORDS = "<words>"  # the data path recorded for words given in Python
INLINE_WORDS = 10_000  # such word lists up to this long are kept in the model directory
# What models must agree on to be combined (ensembles) or to teach one another (distillation): the
# words they learned and how those were split
SAME_DATA = ("sha256", "words_sha256", "split_seed", "split", "casing", "condition", "weighting")


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


def calibrate_model(model: CharModel, corpus: Corpus, choice: str, seed: int) -> dict[str, Any]:
    """Fit the whole-name calibration `choice` asks for (namesmith.training.calibrate) and set it on the model (None
    where it is not kept); what was tried and chosen, for the model directory. A conditional count model
    gets a calibration per label node (namesmith.training.calibrate.calibrate_labels)."""
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
    _log_calibrated(calibration, report, started)
    return report.to_dict()


def _log_calibrated(calibration: Any, report: CalibrationReport, started: float) -> None:
    if calibration is not None:
        log.info(f"calibrated ({report.choice}, {report.method}) in {time.perf_counter() - started:.1f} s: "
                 f"validation NLL {report.validation.get('none', float('nan')):.4f} -> "
                 f"{report.validation.get(report.choice, 0):.4f}")


def evaluate_corpus(model: CharModel, corpus: Corpus) -> dict[str, dict[str, Any]]:
    """Train/val/test metrics: per row and per count for tables, as `evaluate_splits` for word lists."""
    if isinstance(corpus, LabelledCorpus):
        return evaluate_labelled(model, corpus)
    return evaluate_splits(model, corpus)


def read_corpus(data: DataConfig, vocab: Any = None) -> tuple[Corpus, str]:
    """The split corpus of a data source and the casing its names are learned in: the rows of a table
    (split by distinct name; namesmith.data.labelled), or the words of a plain list (today's split)."""
    if data.weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {data.weighting!r}",
                          field="weighting")
    labelled = read_labelled_source(data)
    if labelled is not None:
        table, casing = labelled
        return labelled_corpus(table, data.condition, data.weighting, seed=data.split_seed, split=data.split,
                               vocab=vocab), casing
    if data.condition:
        raise ConfigError(f"condition: {data.path} is a plain word list, without label columns to condition on "
                          "(a table has a header row naming a 'name' column and its labels)", field="condition")
    if data.weighting in ("count", "log"):  # share and none count each word as it is listed
        raise ConfigError(f"weighting: {data.path} is a plain word list, without counts to weigh by", field="weighting")
    words, casing = read_source(data)
    return Corpus.from_words(words, seed=data.split_seed, vocab=vocab, split=data.split), casing


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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside, as before after. Count models fit through thousands of small
    tensor operations: a second thread saves nothing on them (the default `namesmith train`: 2.6 s
    on 2 threads, 2.8 s on one, here), and when another process holds a core, OpenMP's threads spin
    waiting for a partner that is not running, 10-15x slower (41 s instead of 3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def counting_threads(model: CharModel) -> contextlib.AbstractContextManager[None]:
    """`one_thread` for a count model's fitting, calibration and evaluation; a network's threads as they are."""
    return contextlib.nullcontext() if model.neural else one_thread()


def data_record(config: DataConfig, corpus: Corpus, casing: str, given: list[str] | None = None) -> dict[str, Any]:
    """What the checkpoint says about the data: enough to find and verify it again.

    Words `given` in Python (not read from `config.path`) are recorded as such ("<words>", their
    sha256), and kept in the record when there are at most INLINE_WORDS of them, so novelty and
    percentiles work after loading (a small list, the usual case for adaptation, costs little).
    """
    path = config.path if is_catalogue(config.path) else str(Path(config.path).resolve())
    inline = {"words": given} if given is not None and len(given) <= INLINE_WORDS else {}
    return {
        "path": GIVEN_WORDS if given is not None else path,
        "sha256": words_fingerprint(given) if given is not None else source_fingerprint(config.path),
        **inline,
        "case": config.case,
        "casing": casing,  # see namesmith.core.casing: how names were learned and are printed
        "lowercase": folds(casing),  # names were lowercased for the model
        "encoding": config.encoding,
        "max_line_length": config.max_line_length,
        "dedupe": config.dedupe,
        "split_seed": config.split_seed,
        "split": config.split,
        "n_words": {part: len(words) for part, words in corpus.split.parts().items()},
        "words_sha256": words_fingerprint([w for words in corpus.split.parts().values() for w in words]),
        "max_word_length": corpus.max_word_length,
        **({"split_method": "by distinct name", "condition": corpus.condition.names, "weighting": corpus.weighting}
           if isinstance(corpus, LabelledCorpus) else {}),
    }


def data_difference(record: dict[str, Any], other: dict[str, Any]) -> str | None:
    """The first SAME_DATA field in which two checkpoints' data records differ, or None."""
    return next((key for key in SAME_DATA if record.get(key) != other.get(key)), None)


def open_teacher(teacher: str | Path | Checkpoint, device: torch.device) -> tuple[Checkpoint, dict[str, Any]]:
    """The teacher of a distilled network (a model directory, or a loaded model) on `device`, and its record."""
    loaded = teacher if isinstance(teacher, Checkpoint) else load_checkpoint(teacher, device)
    directory = None if isinstance(teacher, Checkpoint) else str(Path(teacher).resolve())
    return Checkpoint(loaded.model.to(device).eval(), loaded.vocab, loaded.meta), teacher_record(loaded, directory)


def check_teacher(teacher: Checkpoint, described: dict[str, Any], corpus: Corpus, record: dict[str, Any],
                  recorded: dict[str, Any] | None = None) -> None:
    """ConfigError unless the teacher learned the same words (data `record`), split the same way, with the
    same vocabulary; and, when resuming, unless it is still the teacher the run started with (`recorded`)."""
    where = described["directory"] or "the teacher given"
    differs = data_difference(teacher.meta.get("data") or {}, record)
    if differs is not None:
        raise ConfigError(f"teacher: {where} was trained on other data ({differs} differs); a teacher must have "
                          "learned the same words, split the same way", field="teacher")
    if teacher.vocab != corpus.vocab:
        raise ConfigError(f"teacher: {where} has another vocabulary than the word list; a teacher must have "
                          "learned the same words", field="teacher")
    if recorded is not None and described["weights_sha256"] != recorded.get("weights_sha256"):
        raise ConfigError(f"teacher: {where} is not the teacher this run started with (its weights differ)",
                          field="teacher")


def _request(model_type: str, data: DataConfig, train_config: TrainConfig, model_config: dict[str, Any] | None,
             prior: str | Path | None = "auto") -> dict[str, Any]:
    """What was asked for: a retrain with the same request may replace its own model directory."""
    request = {"model_type": model_type, "model_options": dict(sorted((model_config or {}).items())),
               "train_config": train_config.to_dict(), "data_sha256": source_fingerprint(data.path),
               "data": {k: v for k, v in dataclasses.asdict(data).items() if k != "path"}}
    if str(prior) != "auto":  # the default is left out: requests recorded before priors existed still match
        request["prior"] = str(prior)
    return request


def check_overwrite(out: str | Path, request: dict[str, Any], overwrite: bool) -> None:
    """Refuse to replace a different trained model in `out` unless `overwrite` (nothing saved is lost silently)."""
    if overwrite or not (Path(out) / META_FILE).is_file():
        return
    try:
        meta = read_meta(out)
    except CheckpointError:
        raise CheckpointError(f"{out}: holds files that are not a readable namesmith model; choose another out "
                              "directory (or pass overwrite to replace them)", field="out") from None
    if meta.get("request") == request:
        return  # the same command again: its result replaces itself
    what = f"a trained {meta['model_type']} model" + ("" if meta.get("complete", True) else " (unfinished: resume it)")
    raise CheckpointError(f"{out}: already holds {what}; choose another output directory, or allow overwriting "
                          "(--overwrite, overwrite=True)", field="out")


def in_memory_estimate(model_type: str, data: DataConfig, order: int | None = None) -> tuple[int, float]:
    """Peak bytes and seconds of CPU of training `model_type` (a streamable count model) on the list `data` names
    held in memory (namesmith.core.memory.in_memory_cost): from its size alone where that passes IN_MEMORY_BYTES,
    else from a pass over it for its words, longest word and characters (a second or so for 40 MB)."""
    size = Path(data.path).stat().st_size
    if words_in_memory(size) > IN_MEMORY_BYTES:
        return words_in_memory(size), 0.0
    scan = scan_file(data)
    vocab_size = len(scan.chars) + 1  # and the boundary token
    order = (order or default_order(vocab_size)) if model_type == "ngram" else None  # bigrams: no windows
    return in_memory_cost(size, scan.n_words, scan.max_word_length, vocab_size, order)


def should_stream(model_type: str, data: DataConfig, stream: bool | None, order: int | None = None) -> bool:
    """Whether `train` streams: when asked, else for a streamable model on a list whose training held in memory is
    estimated to pass IN_MEMORY_BYTES (or the memory available) or IN_MEMORY_SECONDS (`in_memory_estimate`)."""
    if stream is False or is_catalogue(data.path):
        if stream:
            raise ConfigError("stream needs a word-list file, not a built-in data set", field="stream")
        return False
    if is_table_file(data.path, data.encoding):  # (a table without a name column is refused here)
        if stream:
            raise ConfigError(f"stream needs a word-list file; {data.path} is a table (tables are read in memory)",
                              field="stream")
        return False
    streamable = model_type in STREAMERS
    if stream is None:
        ascii_compatible = "\n".encode(data.encoding) == b"\n" and "a".encode(data.encoding) == b"a"
        if not (streamable and not data.dedupe and ascii_compatible):
            return False
        try:
            held, seconds = in_memory_estimate(model_type, data, order)
        except (OSError, NamesmithError):
            return False  # the normal path reports the file problem
        bound = min(IN_MEMORY_BYTES, memory_limit() or IN_MEMORY_BYTES)
        if held <= bound and seconds <= IN_MEMORY_SECONDS:
            return False
        log.info(f"{data.path}: held in memory, training would take about {in_words(held)}"
                 + (f" and {seconds:,.0f} s" if seconds > IN_MEMORY_SECONDS else "")
                 + "; streaming it (counted in blocks; split by a hash of each word's index, about 80/10/10; "
                 "--no-stream holds it)")
        return True
    if not streamable:
        raise ConfigError(f"stream works for models that learn from counts ({', '.join(STREAMERS)}), "
                          f"not {model_type}", field="stream")
    if data.dedupe:
        raise ConfigError("dedupe needs every word in memory; it cannot be combined with stream", field="dedupe")
    if "\n".encode(data.encoding) != b"\n" or "a".encode(data.encoding) != b"a":
        raise ConfigError(f"stream reads ASCII-compatible encodings only, not {data.encoding}", field="encoding")
    return True


def check_reading_memory(model_type: str, data: DataConfig, stream: bool | None) -> None:
    """Refuse, before reading it, a word list too large to hold in memory (namesmith.core.memory), naming what
    to change: a model that cannot stream, or --no-stream."""
    if is_catalogue(data.path):
        return
    try:
        size = Path(data.path).stat().st_size
    except OSError:
        return  # reading it reports the problem
    if model_type in STREAMERS:
        option, advice = ("--no-stream" if stream is False else None), "let it stream (leave out --no-stream)"
    else:
        option = "--model"
        advice = (f"{model_type} learns from words in memory; train an n-gram (the default, which streams a "
                  "large list) or use a smaller list")
    check_fits(words_in_memory(size), f"{data.path}: reading its {size / 1e6:,.0f} MB into memory", advice, option)


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


def base_meta(data_record: dict[str, Any], train_config: TrainConfig, resolved: TrainConfig, model: CharModel,
               request: dict[str, Any]) -> dict[str, Any]:
    return {
        "namesmith_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data_record,
        "request": request,
        "train_config": train_config.to_dict(),
        "resolved_train_config": resolved.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _stream_bigram(model_type: str, data: DataConfig, model_config: dict[str, Any] | None, config: TrainConfig,
                   callback: TrainCallback | None, workers: int) -> tuple[CharModel, Any, int, dict[str, Any]]:
    """Bigram models learn a streamed list from its pair counts."""
    counts = count_pairs_file(data, workers=workers) if workers > 1 else count_file(data)
    model = build_model(model_type, counts.vocab.size, model_config)
    config = resolve_train_config(model, config)
    if config.mode != "full-batch":
        raise ConfigError(f"mode {config.mode} needs every pair in memory; a streamed word list trains "
                          "full-batch from pair counts", field="mode")
    steps = model.fit_pair_counts(counts.part("train"), config, callback, None)
    return model, counts, steps, count_metrics(model, counts)


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
        contexts = sum(distinct_contexts(keys, B) for keys in model.orders(train)[0])  # every order's
    if contexts * model.vocab_size <= DENSE_CELLS:
        model.fit_counts(train, held_out)
        return model
    log.info(f"the n-gram has at least {contexts:,} contexts × {model.vocab_size:,} tokens: held sparsely (its dense "
             f"table would take {contexts * model.vocab_size * 4 / 1e9:,.1f} GB or more)")
    with large_arrays_mapped():  # their work, freed, goes back to the system
        discounts = model.fitted_discounts(train, held_out)
        by_order = model.orders(train, Phase("building the n-gram's tables: their orders", model.config.order - 1,
                                             "orders").advance)
        phase = Phase("building the n-gram's tables", sum(len(keys) for keys in by_order[0]), "n-grams")
        table = sparse_table(None, discounts.double(), by_order, vocab_size=model.vocab_size,
                             progress=phase.advance)
        del by_order
    release_freed_memory()
    return SparseNGram.from_tables(model.vocab_size, model.config.order, [], [table]).eval()


def _fit_ngram(model: NGram, corpus: Corpus, config: TrainConfig, callback: TrainCallback | None
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


def _stream_ngram(model_type: str, data: DataConfig, model_config: dict[str, Any] | None, config: TrainConfig,
                  callback: TrainCallback | None, workers: int) -> tuple[CharModel, Any, int, dict[str, Any]]:
    """The n-gram learns a streamed list from its n-gram counts, counted in shards (and processes, ranks)."""
    model_config = dict(model_config or {})
    order = NGramConfig(**model_config).order if "order" in model_config else None  # None: fit the vocabulary
    counts = count_ngrams_file(data, order, workers=workers)
    model = build_model(model_type, counts.vocab.size, {**model_config, "order": counts.order})
    model = fit_ngram_counts(model, counts.train, counts.held_out)
    if callback:
        callback(1, 1, {})
    return model, counts, 1, ngram_count_metrics(model, counts)


# How each model type that can learn a streamed word list counts it, fits and evaluates from the counts.
STREAMERS = {"bigram": _stream_bigram, "bigram-counts": _stream_bigram, "ngram": _stream_ngram}


def train_streamed(model_type: str, data: DataConfig, train_config: TrainConfig,
                   model_config: dict[str, Any] | None, *, out: str | Path | None = None,
                   callback: TrainCallback | None = None, request: dict[str, Any] | None = None,
                   workers: int = 1) -> Checkpoint:
    """`train` for a streamed word list: count once (in `workers` processes), fit and evaluate from counts."""
    start = time.perf_counter()
    with one_thread():  # count models: see one_thread (the counting's own workers are processes)
        model, counts, steps, metrics = STREAMERS[model_type](model_type, data, model_config, train_config, callback,
                                                              workers)
    log.info(f"streamed {data.path}: {counts.n_bytes} bytes, {sum(counts.n_words.values())} words, "
             f"vocabulary {counts.vocab.size} ({counts.seconds:.2f} s)")
    config = resolve_train_config(model, train_config)
    history = TrainHistory(steps=steps)
    if not model.counts_only and steps < config.max_steps:
        history.stop_reason = "interrupted"
    history.seconds = time.perf_counter() - start
    model.eval()
    record = {"path": str(Path(data.path).resolve()), "sha256": fingerprint(data.path),
              "case": data.case, "casing": "lower" if data.lowercase else "exact",  # streamed: learned as written
              "lowercase": data.lowercase, "encoding": data.encoding, "max_line_length": data.max_line_length,
              "dedupe": False, "split_seed": data.split_seed, "split": data.split, "streamed": True,
              "split_method": "hash of word index" if data.split else "none",
              "n_words": counts.n_words, "max_word_length": counts.max_word_length}
    meta = base_meta(record, train_config, config, model, request or {})
    complete = history.stop_reason != "interrupted"
    vocab, max_word_length = counts.vocab, counts.max_word_length
    cells = {part: counts.word_cells(part) for part in PARTS} if getattr(counts, "cells", None) is not None else None
    del counts  # the counts of a long list (18M n-grams: 0.4 GB) are not held while it is calibrated and saved
    release_freed_memory()
    if complete and cells is not None:
        with one_thread():
            meta["calibration_report"] = _calibrate_streamed(model, vocab, cells, metrics, max_word_length,
                                                             train_config)
        metrics = tilted_count_metrics(model.calibration, cells, metrics) if model.calibration is not None else metrics
    meta.update(model_record(model, vocab), metrics=metrics, history=history.to_dict(),
                complete=complete)  # not resumable: train again to finish
    if out is not None:
        save_checkpoint(out, model, vocab, meta)
    return Checkpoint(model, vocab, meta)


def _calibrate_streamed(model: CharModel, vocab: Vocab, cells: dict[str, torch.Tensor], metrics: dict[str, Any],
                        max_word_length: int, train_config: TrainConfig) -> dict[str, Any]:
    """`calibrate_model` for a streamed list: fitted to its words' `cells` (`NGramFileCounts.word_cells` of each
    part) and chosen on its validation words' NLL (namesmith.training.calibrate.calibrate_counted), as the words in
    memory would be; set on the model."""
    started, val = time.perf_counter(), metrics["val"]
    calibration, report = calibrate_counted(model, vocab, cells["train"], cells["val"], -(val["nll"] or 0.0) *
                                            val["n_chars"], val["n_chars"], choice=train_config.calibrate,
                                            max_len=length_limit(model, None, max_word_length), seed=train_config.seed)
    model.calibration = calibration
    _log_calibrated(calibration, report, started)
    return report.to_dict()


def _counted_by_rank_zero(train_fn: Any) -> Any:
    """Under torchrun, rank 0 alone fits a model that is not neural (count models; sharded counting
    is to come) and saves it to `out`; the other ranks wait for it, then load what it saved. Without
    an `out` to share the result through, every rank fits its own."""

    @functools.wraps(train_fn)
    def train_on_rank_zero(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(train_fn).bind(*args, **kwargs)
        call.apply_defaults()
        given = call.arguments
        if not active() or given["out"] is None or model_class(given["model_type"]).neural:
            return train_fn(*args, **kwargs)
        device = resolve_device((given["train_config"] or TrainConfig()).device)
        world = setup_distributed(device)
        result = train_fn(*args, **kwargs) if world.is_main else None
        world.barrier("waiting for rank 0 to fit the model")
        return result or (load_checkpoint(given["out"], world.device), None)

    return train_on_rank_zero


def _one_writer(train_fn: Any) -> Any:
    """A run that saves to `out` holds it from start to end (`checkpoint.one_writer`): a second run into the
    same directory is refused at once instead of both saying "saved to" and one result being lost. Under
    torchrun, rank 0 alone writes, so it alone holds the directory; nothing to resume is refused by `train`."""

    @functools.wraps(train_fn)
    def holding_out(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(train_fn).bind(*args, **kwargs)
        out, resume = call.arguments.get("out"), call.arguments.get("resume")
        if out is None or (resume and not Path(out).is_dir()) or (launched() and os.environ.get("RANK", "0") != "0"):
            return train_fn(*args, **kwargs)
        with one_writer(out):
            return train_fn(*args, **kwargs)

    return holding_out


class Adapter(Protocol):
    """What trains a read list onto a prior instead of training it as usual (namesmith.adaptation.pipeline), or
    returns None to leave it to the pipeline; the training pipeline knows no prior itself."""

    def __call__(self, corpus: Corpus, record: dict[str, Any], train_config: TrainConfig,
                 model_config: dict[str, Any] | None, *, out: str | Path | None, callback: TrainCallback | None,
                 request: dict[str, Any], plain: bool, device: torch.device) -> tuple[Checkpoint, Corpus] | None: ...


@_counted_by_rank_zero
@_one_writer
def train(
    model_type: str = "ngram",
    data: DataConfig | None = None,
    train_config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    *,
    words: list[str] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callback: TrainCallback | None = None,
    stream: bool | None = None,
    workers: int = 1,
    prior: str | Path | None = "none",
    teacher: str | Path | Checkpoint | None = None,
    adapter: Adapter | None = None,
) -> tuple[Checkpoint, Corpus | None]:
    """Train `model_type` on `words` (or the word list `data` names) and save it to `out`.

    Returns the trained model as a `Checkpoint` record and the split corpus it was trained on (None
    when the word list was streamed). With `resume=True`, continue the interrupted run saved in
    `out` (same data, same model). `stream`: count the file in blocks instead of loading it (models
    that learn from counts: bigram models and the n-gram); None streams a list whose training held in memory
    is estimated to pass its bounds (`should_stream`); `workers` processes count a streamed file in shards.
    An `out` holding a different trained model is refused unless `overwrite`. `prior` is the prior asked
    for (recorded with the request); `adapter`, given by the layer that adapts (namesmith.adaptation.pipeline.train),
    trains the list onto it instead where its rule says so (it returns None otherwise). `teacher`: a
    trained model (directory) of the same word list whose next-character distributions a neural
    model learns from as well as from the words (namesmith.training.distill); resuming such a run loads the
    teacher from where it was, unless given again.
    """
    data = data or DataConfig()
    train_config = train_config or TrainConfig()
    device = resolve_device(train_config.device)  # before reading data: fail fast on a bad device
    if not (isinstance(workers, int) and workers >= 1):
        raise ConfigError(f"workers must be an integer of at least 1, got {workers!r}", field="workers")
    if adapter is None and prior is not None and str(prior) != "none":
        raise ConfigError(f"prior: training onto a prior ({prior}) is namesmith.adaptation.pipeline.train's (as "
                          "NameModel.train calls it); this pipeline trains a list alone", field="prior")
    if teacher is not None and not model_class(model_type).neural:
        raise ConfigError(f"teacher: distillation trains a neural model; {model_type} is not one", field="teacher")
    if teacher is not None and str(prior) not in ("auto", "none"):  # "auto" adapts no neural model
        raise ConfigError(f"teacher: a model adapted onto a prior (prior {prior}) is not distilled; train it "
                          "with its teacher or with the prior, not both", field="teacher")
    if words is None and not resume and model_type not in STREAMERS:  # before hashing a list it cannot hold
        check_reading_memory(model_type, data, stream)
    taught = None if teacher is None else open_teacher(teacher, device)
    request = _request(model_type, data, train_config, model_config, prior) if words is None else None
    if request is not None and taught is not None:  # another teacher makes another model
        request["teacher"] = taught[1]["weights_sha256"]
    if out is not None and not resume:
        check_overwrite(out, request, overwrite)
    order = (model_config or {}).get("order")
    if words is None and not resume and should_stream(model_type, data, stream,
                                                      order if isinstance(order, int) else None):
        if out is not None:
            check_writable(out)
        return train_streamed(model_type, data, train_config, model_config, out=out, callback=callback,
                              request=request, workers=workers), None
    # one rank of several (torchrun) trains a neural model with the others; count models: see _counted_by_rank_zero
    world = setup_distributed(device) if model_class(model_type).neural else None
    device = device if world is None else world.device
    writes = out is not None and (world is None or world.is_main)  # rank 0 alone writes the model directory
    given = words is not None
    if words is None:
        check_reading_memory(model_type, data, stream)
        corpus, casing = read_corpus(data)
    else:
        words, casing = prepare_words(check_words(words), data)
        corpus = Corpus.from_words(words, seed=data.split_seed, split=data.split)
    torch.manual_seed(train_config.seed)
    plain = not isinstance(corpus, LabelledCorpus) or (not corpus.conditioned and corpus.row_weights("train") is None)
    if adapter is not None and not resume:  # a short list adapted onto a prior (namesmith.adaptation.pipeline)
        adapted = adapter(corpus, data_record(data, corpus, casing, words if given else None), train_config,
                          model_config, out=out, callback=callback, request=request or {}, plain=plain, device=device)
        if adapted is not None:
            return adapted
    resume_state, taught_by = None, None
    if resume:
        model, train_config, resume_state, taught_by = _resumable(out, model_type, data, corpus, casing, train_config,
                                                                  words if given else None)
        if taught_by is None and teacher is not None:
            raise ConfigError(f"teacher: the run in {out} was trained without a teacher; resume it without one",
                              field="teacher")
        if taught_by is not None and teacher is None:
            if taught_by.get("directory") is None:
                raise ConfigError(f"teacher: the run in {out} was taught by a model given in Python; pass it again "
                                  "to resume", field="teacher")
            try:
                taught = open_teacher(taught_by["directory"], device)
            except CheckpointError as e:
                raise CheckpointError(f"{e} (the teacher of the run in {out}; if it moved, pass teacher where it is "
                                      "now)") from None
    else:
        check_training_memory(model_type, model_config, corpus, train_config, data)
        model = condition_model(build_model(model_type, corpus.vocab.size, model_config, corpus), corpus,
                                train_config)
    if train_config.distill_weight is not None and taught is None:
        raise ConfigError("distill_weight applies to a network trained with a teacher; none was given",
                          field="distill_weight")
    if train_config.ngram_mix and not model.neural:
        raise ConfigError(f"ngram_mix applies to neural models; {model_type} is not one", field="ngram_mix")
    config = resolve_train_config(model, train_config)
    if config.ngram_mix and model.neural:  # the mix's order: checked now, not after training
        if train_config.ngram_mix is not None:
            check_order(config.ngram_mix, corpus.vocab.size, "ngram_mix")
        elif config.ngram_mix > default_order(corpus.vocab.size):
            config = dataclasses.replace(config, ngram_mix=default_order(corpus.vocab.size))
            log.info(f"a vocabulary of {corpus.vocab.size} tokens: the network is mixed with an order-"
                     f"{config.ngram_mix} n-gram (higher orders' keys would overflow int64)")
    if writes:
        check_writable(out)  # now, not after training
    model.to(device).train()
    record = data_record(data, corpus, casing, words if given else None)
    meta = base_meta(record, train_config, config, model, request or {})
    teacher_model = None
    if taught is not None:
        check_teacher(*taught, corpus, record, taught_by)
        teacher_model, meta["teacher"] = taught[0].model.to(device), taught[1]
        log.info(f"taught by the {meta['teacher']['model_type']} model of "
                 f"{meta['teacher']['directory'] or 'the teacher given'} (distill weight {config.distill_weight})")
    last_state: dict[str, Any] = {}

    def on_checkpoint(state: dict[str, Any]) -> None:
        last_state["state"] = state
        if out is not None:
            save_checkpoint(out, model, corpus.vocab, {**meta, "complete": False}, train_state=state)

    log.info(f"training {model_type} on {len(corpus.split.train)} words, device {device}")
    if type(model) is NGram and resume_state is None:
        model, history = _fit_ngram(model, corpus, config, callback)
    else:
        history = fit_model(model, corpus, config, callback, resume=resume_state, on_checkpoint=on_checkpoint,
                            world=world, teacher=teacher_model)
    model = unwrap(model).eval()
    complete = history.stop_reason != "interrupted"
    if complete and config.ngram_mix and model.neural:
        meta["metrics_without_ngram"] = evaluate_corpus(model, corpus)
        model = mix_with_ngram(model, corpus, config.ngram_mix, mix_ngram(corpus, config.ngram_mix))
        model.eval()
    # a conditional count model is calibrated per label node (us: 42 of 45 nodes), by default too
    conditional = isinstance(model, ConditionalCounts) and model.labels
    with counting_threads(model):  # beside a busy core, 2 threads scored a sparse n-gram 10x slower
        if complete and (plain or conditional):
            meta["calibration_report"] = calibrate_model(model, corpus, train_config.calibrate, train_config.seed)
        metrics = evaluate_corpus(model, corpus)
    meta.update(model_record(model, corpus.vocab), metrics=metrics, history=history.to_dict(), complete=complete)
    if writes:
        save_checkpoint(out, model, corpus.vocab, meta, train_state=None if complete else last_state.get("state"))
    if world is not None:  # every rank returns once the model is saved
        world.barrier("waiting for rank 0 to save the model")
    return Checkpoint(model, corpus.vocab, meta), corpus


def _resumable(out: str | Path | None, model_type: str, data: DataConfig, corpus: Corpus, casing: str,
               train_config: TrainConfig, given: list[str] | None
               ) -> tuple[CharModel, TrainConfig, dict[str, Any], dict[str, Any] | None]:
    """The model, recorded training config, training state and teacher record (None: no teacher) of
    the interrupted run in `out`."""
    if out is None:
        raise ConfigError("resume needs out, the model directory of the interrupted run", field="resume")
    saved = load_checkpoint(out, resolve_device(train_config.device), with_train_state=True)
    if saved.train_state is None:
        raise CheckpointError(f"{out}: has nothing to resume (its training finished or never started)")
    saved_type = saved.meta["model_type"]
    if saved.model.labels:  # a conditional model: the type it was asked as is its inner one
        saved_type = saved.meta["model_config"].get("model_type", saved_type)
    if saved_type != model_type:
        raise ConfigError(f"resume: {out} holds a {saved_type} model, not {model_type}", field="model")
    recorded = saved.meta["data"].get("words_sha256")
    expected = data_record(data, corpus, casing, given)
    if (saved.meta["data"]["sha256"] != expected["sha256"] or saved.vocab != corpus.vocab
            or recorded not in (None, expected["words_sha256"])):
        raise ConfigError(f"resume: the data differs from the data {out} was trained on", field="data")
    try:
        config = TrainConfig(**{**saved.meta.get("train_config", {}), "device": train_config.device})
    except TypeError as e:
        raise CheckpointError(f"{out}: the recorded training config is malformed ({e})") from None
    return saved.model, config, saved.train_state, saved.meta.get("teacher")


def corpus_for_checkpoint(meta: dict[str, Any], vocab: Any, path: str | None = None) -> Corpus:
    """The split corpus a checkpoint was trained on, read again (fingerprint checked)."""
    record = meta["data"]
    if record.get("split_method") != "by distinct name":  # a plain word list, or a checkpoint from before tables
        words = words_for_checkpoint(meta, path)
        return Corpus.from_words(words, seed=record["split_seed"], vocab=vocab, split=record.get("split", True))
    source = path or record["path"]
    config = DataConfig(path=source, case=record.get("case") or "auto", encoding=record["encoding"],
                        max_line_length=record["max_line_length"], split_seed=record["split_seed"],
                        split=record.get("split", True), condition=tuple(record.get("condition") or ()),
                        weighting=record.get("weighting", "none"))
    try:
        if source_fingerprint(source) != record["sha256"]:
            raise NamesmithError(f"{source}: is not the table this model was trained on (its sha256 differs)")
        corpus, _ = read_corpus(config, vocab)
    except (NamesmithError, OSError) as e:
        raise NamesmithError(f"{e} (pass data= the table the model was trained on)") from None
    return corpus


def words_for_checkpoint(meta: dict[str, Any], path: str | None = None) -> list[str]:
    """Re-read the word list a checkpoint was trained on, checking its fingerprint."""
    record = meta["data"]
    if path is None and isinstance(record.get("words"), list) and all(isinstance(w, str) for w in record["words"]):
        return list(record["words"])  # given in Python and kept in the model directory
    if record["path"] == GIVEN_WORDS and path is None:
        raise NamesmithError("the model was trained on words given in Python (too many to keep in the model "
                             "directory): pass data= a file of those words for novelty and percentiles")
    source = path or record["path"]
    if source == GIVEN_WORDS:
        raise NamesmithError(f"the model was trained on words given in Python (more than {INLINE_WORDS:,}, so not "
                             "kept in its directory); pass data= a file holding them")
    config = DataConfig(path=source, case=record.get("case") or ("lower" if record["lowercase"] else "exact"),
                        encoding=record["encoding"],
                        max_line_length=record["max_line_length"], dedupe=record["dedupe"],
                        split_seed=record["split_seed"], split=record.get("split", True))
    try:
        words, _ = read_source(config)
    except NamesmithError as e:
        raise NamesmithError(f"{e} (pass data= the word list the model was trained on)") from None
    if record["path"] == GIVEN_WORDS:  # the recorded fingerprint is of the split words, in split order
        parts = split_words(words, record["split_seed"], record.get("split", True)).parts().values()
        same = words_fingerprint([w for part in parts for w in part]) == record["words_sha256"]
    else:
        same = source_fingerprint(source) == record["sha256"]
    if not same:
        raise NamesmithError(f"{source}: is not the word list this model was trained on (its sha256 differs)")
    return words

