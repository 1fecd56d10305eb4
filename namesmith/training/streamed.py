"""Training on a word list counted in blocks rather than held in memory (streamed): when, and how.

`should_stream` decides (by an estimate of what holding the list would take: namesmith.core.memory); the
model types that learn from counts alone (`STREAMERS`: bigram models from pair counts, the n-gram from
n-gram counts counted in shards, processes or ranks: namesmith.data.counting) are fitted and evaluated
from the counts by `train_streamed`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from namesmith.core.config import TrainConfig
from namesmith.core.errors import ConfigError, NamesmithError
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.core.memory import (
    IN_MEMORY_BYTES,
    IN_MEMORY_SECONDS,
    check_fits,
    in_memory_cost,
    in_words,
    memory_limit,
    release_freed_memory,
    words_in_memory,
)
from namesmith.core.threads import one_thread
from namesmith.core.vocab import Vocab
from namesmith.data.counting import PARTS, count_ngrams_file, scan_file
from namesmith.data.ngram_keys import default_order
from namesmith.data.pair_counts import count_file, count_pairs_file
from namesmith.data.sources import is_catalogue, is_table_file
from namesmith.data.words import DataConfig, fingerprint
from namesmith.generation.config import length_limit
from namesmith.models.base import CharModel
from namesmith.models.ngram import NGramConfig
from namesmith.scoring.evaluate import count_metrics, ngram_count_metrics, tilted_count_metrics
from namesmith.training.calibrate import calibrate_counted
from namesmith.training.checkpoint import Checkpoint, model_record, save_checkpoint
from namesmith.training.fitting import build_model, fit_ngram_counts, log_calibrated, resolve_train_config
from namesmith.training.provenance import base_meta

log = logging.getLogger("namesmith")


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
    log_calibrated(calibration, report, started)
    return report.to_dict()
