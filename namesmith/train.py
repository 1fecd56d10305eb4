"""Training a model of any type on a word list: data → split → model → fit → evaluate → save.

`train()` is what `namesmith train` runs. Each model type fits itself (`CharModel.fit`): count
models count, the seed's bigram runs its gradient descent, neural models use the shared
trainer. This module only wires data, configs, devices, evaluation and checkpoints together.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from namesmith import __version__
from namesmith.checkpoint import check_writable, load_checkpoint, save_checkpoint
from namesmith.config import TrainConfig
from namesmith.data import BUILTIN, Corpus, DataConfig, check_words, fingerprint, load_words, words_fingerprint
from namesmith.device import resolve_device
from namesmith.errors import CheckpointError, ConfigError, NamesmithError
from namesmith.evaluate import Evaluation, evaluate, pair_nll
from namesmith.history import TrainCallback, TrainHistory
from namesmith.models import model_class
from namesmith.models.base import CharModel
from namesmith.models.bigram import BigramTable, count_pairs
from namesmith.vocab import Vocab

log = logging.getLogger("namesmith")


@dataclass
class TrainResult:
    """A trained model with its data, history and held-out figures."""

    model: CharModel
    vocab: Vocab
    corpus: Corpus | None  # None when the word list was streamed (namesmith.counting)
    history: TrainHistory
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # split → Evaluation.to_dict()
    meta: dict[str, Any] = field(default_factory=dict)  # what the checkpoint records


def build_model(model_type: str, vocab_size: int, overrides: dict[str, Any] | None = None,
                corpus: Corpus | None = None) -> CharModel:
    """A fresh model; `overrides` are its config fields (unknown ones are a ConfigError)."""
    cls = model_class(model_type)
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    for name in overrides:
        if name not in known:
            raise ConfigError(f"--{name.replace('_', '-')} does not apply to --model {model_type} "
                              f"(its options: {', '.join(sorted(known)) or 'none'})")
    make_config = getattr(cls, "make_config", None)
    try:
        config = make_config(overrides, corpus) if make_config else cls.config_class(**overrides)
    except TypeError as e:
        raise ConfigError(f"--model {model_type}: {e}") from None
    return cls(vocab_size, config)


def data_record(config: DataConfig, corpus: Corpus) -> dict[str, Any]:
    """What the checkpoint says about the data: enough to find and verify it again."""
    path = config.path if config.path == BUILTIN else str(Path(config.path).resolve())
    return {
        "path": path,
        "sha256": fingerprint(config.path),
        "lowercase": config.lowercase,
        "encoding": config.encoding,
        "max_line_length": config.max_line_length,
        "dedupe": config.dedupe,
        "split_seed": config.split_seed,
        "split": config.split,
        "n_words": {part: len(words) for part, words in corpus.split.parts().items()},
        "words_sha256": words_fingerprint([w for words in corpus.split.parts().values() for w in words]),
        "max_word_length": corpus.max_word_length,
    }


def evaluate_splits(model: CharModel, corpus: Corpus) -> dict[str, dict[str, Any]]:
    """NLL per character and perplexity on train, val and test."""
    if isinstance(model, BigramTable):  # from pair counts: the same figures without (B, T, V) logits
        with torch.no_grad():
            log_probs = model.log_probs().double().cpu().numpy()
        metrics = {}
        for part in ("train", "val", "test"):
            pair_counts = count_pairs(*corpus.tensors(part), model.vocab_size).double().numpy()
            nll = pair_nll(log_probs, pair_counts)
            metrics[part] = Evaluation(nll, len(corpus.words(part)), int(pair_counts.sum())).to_dict()
        return metrics
    return {part: evaluate(model, corpus.words(part), corpus.vocab).to_dict() for part in ("train", "val", "test")}


def train(
    model_type: str = "bigram",
    data: DataConfig | None = None,
    train_config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    *,
    words: list[str] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    callback: TrainCallback | None = None,
    stream: bool | None = None,
) -> TrainResult:
    """Train `model_type` on `words` (or the word list `data` names) and save it to `out`.

    With `resume=True`, continue the interrupted run saved in `out` (same data, same model).
    `stream`: count the file in blocks instead of loading it (bigram models; see namesmith.counting);
    None streams files of at least counting.STREAM_THRESHOLD bytes. A streamed result has no corpus.
    """
    data = data or DataConfig()
    train_config = train_config or TrainConfig()
    if words is None and not resume:
        from namesmith.counting import should_stream, train_streamed

        if should_stream(model_type, data, stream):
            return train_streamed(model_type, data, train_config, model_config, out=out, callback=callback)
    device = resolve_device(train_config.device)  # before reading data: fail fast on a bad --device
    words = load_words(data) if words is None else check_words(words)
    corpus = Corpus.from_words(words, seed=data.split_seed, split=data.split)
    torch.manual_seed(train_config.seed)

    resume_state = None
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out, the model directory of the interrupted run")
        saved = load_checkpoint(out, device, with_train_state=True)
        if saved.train_state is None:
            raise CheckpointError(f"{out}: has nothing to resume (its training finished or never started)")
        if saved.meta["model_type"] != model_type:
            raise ConfigError(f"--resume: {out} holds a {saved.meta['model_type']} model, not {model_type}")
        recorded = saved.meta["data"].get("words_sha256")
        if (saved.meta["data"]["sha256"] != fingerprint(data.path) or saved.vocab != corpus.vocab
                or recorded not in (None, data_record(data, corpus)["words_sha256"])):
            raise ConfigError(f"--resume: the data differs from the data {out} was trained on")
        model, resume_state = saved.model, saved.train_state
        try:
            train_config = TrainConfig(**{**saved.meta.get("train_config", {}), "device": train_config.device})
        except TypeError as e:
            raise CheckpointError(f"{out}: the recorded training config is malformed ({e})") from None
    else:
        model = build_model(model_type, corpus.vocab.size, model_config, corpus)
    neural = not (model.counts_only or isinstance(model, BigramTable))  # what --ngram-mix applies to
    if train_config.ngram_mix and not neural:
        raise ConfigError(f"--ngram-mix applies to neural models; {model_type} is not one")
    if out is not None:
        check_writable(out)  # now, not after training
    model.to(device).train()
    config = train_config.with_defaults(model.train_defaults(train_config))

    meta: dict[str, Any] = {
        "namesmith_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data_record(data, corpus),
        "train_config": train_config.to_dict(),
        "resolved_train_config": config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    last_state: dict[str, Any] = {}

    def on_checkpoint(state: dict[str, Any]) -> None:
        last_state["state"] = state
        if out is not None:
            save_checkpoint(out, model, corpus.vocab, {**meta, "complete": False}, train_state=state)

    log.info(f"training {model_type} on {len(corpus.split.train)} words, device {device}")
    history = model.fit(corpus, config, callback, resume=resume_state, on_checkpoint=on_checkpoint)
    model.eval()
    complete = history.stop_reason != "interrupted"
    if complete and config.ngram_mix and neural:
        from namesmith.models.ngram_mix import mix_with_ngram

        meta["metrics_without_ngram"] = evaluate_splits(model, corpus)
        model = mix_with_ngram(model, corpus, config.ngram_mix)
        model.eval()
    metrics = evaluate_splits(model, corpus)
    meta.update(metrics=metrics, history=history.to_dict(), complete=complete)
    if out is not None:
        save_checkpoint(out, model, corpus.vocab, meta, train_state=None if complete else last_state.get("state"))
    return TrainResult(model, corpus.vocab, corpus, history, metrics, meta)


def words_for_checkpoint(meta: dict[str, Any], path: str | None = None) -> list[str]:
    """Re-read the word list a checkpoint was trained on, checking its fingerprint."""
    record = meta["data"]
    source = path or record["path"]
    config = DataConfig(path=source, lowercase=record["lowercase"], encoding=record["encoding"],
                        max_line_length=record["max_line_length"], dedupe=record["dedupe"],
                        split_seed=record["split_seed"], split=record.get("split", True))
    try:
        words = load_words(config)
    except NamesmithError as e:
        raise NamesmithError(f"{e} (pass --data with the word list the model was trained on)") from None
    if fingerprint(source) != record["sha256"]:
        raise NamesmithError(f"{source}: is not the word list this model was trained on (its sha256 differs)")
    return words
