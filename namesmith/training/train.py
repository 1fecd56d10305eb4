"""Training a model of any type on a word list: data → split → model → fit → evaluate → save.

`train()` is what `NameModel.train` and `namesmith train` run. Models that are not `neural` fit
themselves (`CharModel.fit`: count models count, the seed's bigram runs its own descent); neural
models are trained by namesmith.training.trainer, chosen here. Large word lists are streamed to models that
learn from counts alone (namesmith.training.streamed). This module wires data, configs, devices, evaluation
and checkpoints together, in phases: the request checked, the data read, the model built or resumed
(namesmith.training.fitting), fitted, then calibrated, evaluated and saved (namesmith.training.provenance says
what its directory records).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import torch

from namesmith.core.config import TrainConfig
from namesmith.core.device import resolve_device
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.data.labelled import LabelledCorpus
from namesmith.data.ngram_keys import check_order, default_order
from namesmith.data.words import Corpus, DataConfig, check_words, prepare_words
from namesmith.models import model_class
from namesmith.models.base import CharModel
from namesmith.models.conditional_counts import ConditionalCounts
from namesmith.models.ngram import NGram
from namesmith.models.ngram_mix import mix_with_ngram
from namesmith.training.checkpoint import (
    Checkpoint,
    check_writable,
    load_checkpoint,
    model_record,
    one_writer,
    save_checkpoint,
)
from namesmith.training.distill import teacher_record
from namesmith.training.distributed import active, launched
from namesmith.training.distributed import setup as setup_distributed
from namesmith.training.fitting import (
    build_model,
    calibrate_model,
    check_training_memory,
    condition_model,
    counting_threads,
    evaluate_corpus,
    fit_model,
    fit_ngram,
    mix_ngram,
    resolve_train_config,
    unwrap,
)
from namesmith.training.provenance import (
    base_meta,
    check_overwrite,
    data_difference,
    data_record,
    read_corpus,
    request_record,
)
from namesmith.training.streamed import STREAMERS, check_reading_memory, should_stream, train_streamed

log = logging.getLogger("namesmith")


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
    _check_request(model_type, workers, prior, teacher, adapter)
    if words is None and not resume and model_type not in STREAMERS:  # before hashing a list it cannot hold
        check_reading_memory(model_type, data, stream)
    taught = None if teacher is None else open_teacher(teacher, device)
    request = request_record(model_type, data, train_config, model_config, prior) if words is None else None
    if request is not None and taught is not None:  # another teacher makes another model
        request["teacher"] = taught[1]["weights_sha256"]
    if out is not None and not resume:
        check_overwrite(out, request, overwrite)
    if words is None and not resume and _streams(model_type, data, stream, model_config):
        if out is not None:
            check_writable(out)
        return train_streamed(model_type, data, train_config, model_config, out=out, callback=callback,
                              request=request, workers=workers), None
    # one rank of several (torchrun) trains a neural model with the others; count models: see _counted_by_rank_zero
    world = setup_distributed(device) if model_class(model_type).neural else None
    device = device if world is None else world.device
    writes = out is not None and (world is None or world.is_main)  # rank 0 alone writes the model directory
    corpus, casing, words = _read(model_type, data, words, stream)
    torch.manual_seed(train_config.seed)
    plain = not isinstance(corpus, LabelledCorpus) or (not corpus.conditioned and corpus.row_weights("train") is None)
    if adapter is not None and not resume:  # a short list adapted onto a prior (namesmith.adaptation.pipeline)
        adapted = adapter(corpus, data_record(data, corpus, casing, words), train_config,
                          model_config, out=out, callback=callback, request=request or {}, plain=plain, device=device)
        if adapted is not None:
            return adapted
    model, train_config, resume_state, taught, taught_by = _model_to_fit(
        model_type, data, corpus, casing, train_config, model_config, out=out, resume=resume,
        given=words, teacher=teacher, taught=taught, device=device)
    config = _resolved_config(model, model_type, train_config, corpus, taught)
    if writes:
        check_writable(out)  # now, not after training
    model.to(device).train()
    record = data_record(data, corpus, casing, words)
    meta = base_meta(record, train_config, config, model, request or {})
    teacher_model = _teacher_model(taught, taught_by, corpus, record, meta, device, config)
    log.info(f"training {model_type} on {len(corpus.split.train)} words, device {device}")
    model, history, last_state = _fit(model, corpus, config, callback, meta, out=out, resume_state=resume_state,
                                      world=world, teacher=teacher_model)
    model = _finished(model, history, corpus, config, train_config, meta, plain)
    if writes:
        save_checkpoint(out, model, corpus.vocab, meta,
                        train_state=None if meta["complete"] else last_state.get("state"))
    if world is not None:  # every rank returns once the model is saved
        world.barrier("waiting for rank 0 to save the model")
    return Checkpoint(model, corpus.vocab, meta), corpus


def _check_request(model_type: str, workers: int, prior: str | Path | None, teacher: str | Path | Checkpoint | None,
                   adapter: Adapter | None) -> None:
    """`train`'s arguments that contradict one another, refused before anything is read."""
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


def _streams(model_type: str, data: DataConfig, stream: bool | None, model_config: dict[str, Any] | None) -> bool:
    """Whether the list `data` names is streamed (`should_stream`, for the order asked for, if any)."""
    order = (model_config or {}).get("order")
    return should_stream(model_type, data, stream, order if isinstance(order, int) else None)


def _read(model_type: str, data: DataConfig, words: list[str] | None, stream: bool | None
          ) -> tuple[Corpus, str, list[str] | None]:
    """The split corpus of the list `data` names (or of `words` given in Python), the casing its names are learned
    in, and the words given, cleaned (None for a list read from `data`)."""
    if words is None:
        check_reading_memory(model_type, data, stream)
        corpus, casing = read_corpus(data)
        return corpus, casing, None
    words, casing = prepare_words(check_words(words), data)
    return Corpus.from_words(words, seed=data.split_seed, split=data.split), casing, words


def _model_to_fit(model_type: str, data: DataConfig, corpus: Corpus, casing: str, train_config: TrainConfig,
                  model_config: dict[str, Any] | None, *, out: str | Path | None, resume: bool,
                  given: list[str] | None, teacher: str | Path | Checkpoint | None,
                  taught: tuple[Checkpoint, dict[str, Any]] | None, device: torch.device
                  ) -> tuple[CharModel, TrainConfig, dict[str, Any] | None, tuple[Checkpoint, dict[str, Any]] | None,
                             dict[str, Any] | None]:
    """The model to fit, its training config, the training state to resume from (None: a fresh start), the teacher
    (opened from where the interrupted run recorded it, if not given again) and the teacher the run recorded."""
    if not resume:
        check_training_memory(model_type, model_config, corpus, train_config, data)
        model = condition_model(build_model(model_type, corpus.vocab.size, model_config, corpus), corpus,
                                train_config)
        return model, train_config, None, taught, None
    model, train_config, resume_state, taught_by = _resumable(out, model_type, data, corpus, casing, train_config,
                                                              given)
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
    return model, train_config, resume_state, taught, taught_by


def _resolved_config(model: CharModel, model_type: str, train_config: TrainConfig, corpus: Corpus,
                     taught: tuple[Checkpoint, dict[str, Any]] | None) -> TrainConfig:
    """The training config with the model type's defaults filled in, checked against the model and the data."""
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
    return config


def _teacher_model(taught: tuple[Checkpoint, dict[str, Any]] | None, taught_by: dict[str, Any] | None,
                   corpus: Corpus, record: dict[str, Any], meta: dict[str, Any], device: torch.device,
                   config: TrainConfig) -> CharModel | None:
    """The teacher's model on `device` (None without one), checked against the data; `meta` records it."""
    if taught is None:
        return None
    check_teacher(*taught, corpus, record, taught_by)
    teacher_model, meta["teacher"] = taught[0].model.to(device), taught[1]
    log.info(f"taught by the {meta['teacher']['model_type']} model of "
             f"{meta['teacher']['directory'] or 'the teacher given'} (distill weight {config.distill_weight})")
    return teacher_model


def _fit(model: CharModel, corpus: Corpus, config: TrainConfig, callback: TrainCallback | None,
         meta: dict[str, Any], *, out: str | Path | None, resume_state: dict[str, Any] | None, world: Any,
         teacher: CharModel | None) -> tuple[CharModel, TrainHistory, dict[str, Any]]:
    """The fitted model (a plain n-gram may come back sparse), its history, and the last training state
    saved to `out` on the way (under "state"), which an interrupted run is saved with."""
    last_state: dict[str, Any] = {}

    def on_checkpoint(state: dict[str, Any]) -> None:
        last_state["state"] = state
        if out is not None:
            save_checkpoint(out, model, corpus.vocab, {**meta, "complete": False}, train_state=state)

    if type(model) is NGram and resume_state is None:
        model, history = fit_ngram(model, corpus, config, callback)
    else:
        history = fit_model(model, corpus, config, callback, resume=resume_state, on_checkpoint=on_checkpoint,
                            world=world, teacher=teacher)
    return model, history, last_state


def _finished(model: CharModel, history: TrainHistory, corpus: Corpus, config: TrainConfig, train_config: TrainConfig,
              meta: dict[str, Any], plain: bool) -> CharModel:
    """The fitted model as it is saved: unwrapped, mixed with its n-gram (networks), calibrated and evaluated
    when training completed; `meta` gets its record, metrics, history and whether it is complete."""
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
    return model

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


