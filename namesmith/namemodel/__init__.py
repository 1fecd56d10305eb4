"""`NameModel`: one object for a trained model, and every question a user asks of it.

As litgpt's `LLM` or a scikit-learn estimator: `NameModel.train(...)` or `NameModel.load(dir)`
gives an object holding the network or count model, its vocabulary and its metadata (type,
configs, data record, metrics, history); the training words, needed only for novelty and
percentiles, are read lazily the first time they are needed (and checked against the recorded
fingerprint). The CLI, the web server and the benchmarks are thin callers of this object, so each
rule — the length guard, how novelty is checked, which split is evaluated — lives in one place.
Its generating and scoring methods are written in namesmith.namemodel.generating and namesmith.namemodel.scoring,
as mixins it inherits: one file per concern of the door.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesmith.core.casing import fold
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError, DataError, NamesmithError
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.core.version import __version__
from namesmith.core.vocab import Vocab
from namesmith.data.words import BUILTIN, Corpus, DataConfig, Split, check_words
from namesmith.generation.exact_cache import TABLES, ExactCache
from namesmith.generation.novelty import KnownWords, known_words
from namesmith.generation.saved_tables import TABLES_KEY, PlainTables
from namesmith.namemodel.generating import Generating
from namesmith.namemodel.scoring import Scoring
from namesmith.training.checkpoint import (
    META_FILE,
    Checkpoint,
    SavedClassifier,
    checked_without_model,
    load_checkpoint,
    model_record,
    read_meta,
    save_checkpoint,
    saved_classifier,
)
from namesmith.training.records import check_same_data, describe, split_options

# The modules that use torch are imported in the methods that need them: a count model loads and draws its plain
# names from its saved tables without torch (namesmith.generation.saved_tables, docs/startup.md).
if TYPE_CHECKING:
    import torch

    from namesmith.core.conditional import Where
    from namesmith.models.base import CharModel
    from namesmith.models.ngram import NGram
    from namesmith.scoring.report import Transition


class NameModel(Generating, Scoring):
    """A trained model with its vocabulary and everything recorded about it."""

    def __init__(self, model: CharModel | None, vocab: Vocab, meta: dict[str, Any], *, corpus: Corpus | None = None,
                 directory: str | Path | None = None, data: str | None = None):
        self._model = None if model is None else model.eval()  # None: loaded from `directory` on first use
        self._model_lock = threading.Lock()
        # the directory's tables of its plain names (namesmith.generation.saved_tables): their entry, read on first use
        self._tables_entry: dict[str, Any] | None = None
        self._plain: PlainTables | None = None
        self._classify_tables: SavedClassifier | None = None  # see `load` and `classify`
        self.vocab = vocab
        self.meta = meta
        self.directory = None if directory is None else Path(directory)
        self._corpus = corpus  # the split training words, read on first use when None
        self._data_path = data  # where the training word list is, if it moved since training
        self._reference: dict[tuple, Any] = {}  # per `where`: sorted NLL per character of the training words
        self._reference_lock = threading.Lock()  # concurrent first scores of one `where` compute it once
        self._known: KnownWords | None = None  # the training words as sets, for novelty
        self._exact: dict[tuple, ExactCache] = {}  # per `where`: exact samplers' tables, reused by later requests
        self.background_tables = False  # a server sets this: tables a request gave up on are built for the next
        self._twists: ExactCache | None = None  # guided sampling's twist tables (one n-gram, whatever `where`)
        self._twist: NGram | None = None  # the n-gram that steers guided sampling (see `_guide`)
        self._scorer: tuple[NameModel, Where | None] | None = None  # "more like these": the model that scores

    # --- making one --------------------------------------------------------------------------
    @classmethod
    def train(cls, data: str | Path = BUILTIN, model: str = "ngram", *, words: Sequence[str] | None = None,
              out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
              callback: TrainCallback | None = None, stream: bool | None = None, workers: int = 1,
              prior: str | Path = "auto", teacher: str | Path | NameModel | None = None,
              **options: Any) -> NameModel:
        """Train a `model` on the word list `data` ("builtin" or a path), or on `words`, and save it to `out`.

        `options` are any field of `DataConfig` (lowercase, split_seed, ...), `TrainConfig` (max_steps,
        time_budget, seed, ...) or the model type's config (order, n_embd, ...). With `resume`,
        continue the interrupted run saved in `out`. An `out` that holds a different trained model is
        refused unless `overwrite`. `callback(step, total, metrics)` returning True stops training
        cleanly (the result is then resumable). `stream` counts a word-list file in blocks instead of
        loading it (bigram models and the n-gram; by default for a list estimated to pass 1 GB or a minute
        held in memory), in `workers` processes. `prior`: "auto" adapts an ngram of fewer than 1,000 training
        names onto the catalogue's prior, "catalogue" an ngram or gru whatever the size, a model directory onto that
        model, "none" never (see namesmith.adaptation.adapt). `teacher`: a trained model (or its directory) of the
        same word list, an ensemble say, whose next-character distributions a neural model learns from
        as well as from the words (knowledge distillation: namesmith.training.distill).
        """
        from namesmith.adaptation.pipeline import train

        data_options, train_options, model_options = split_options(model, options)
        data_config = DataConfig(path=str(data), **data_options)
        if isinstance(teacher, NameModel):  # its directory, where it has one: a resumed run finds it there
            teacher = teacher.directory or Checkpoint(teacher.model, teacher.vocab, teacher.meta)
        checkpoint, corpus = train(model, data_config, TrainConfig(**train_options), model_options,
                                   words=words, out=out, resume=resume,
                                   overwrite=overwrite, callback=callback, stream=stream, workers=workers,
                                   prior=prior, teacher=teacher)
        return cls._from(checkpoint, corpus=corpus, directory=out)

    def adapt(self, words: Sequence[str], *, where: Where | None = None, order: int | None = None, seed: int = 1337,
              out: str | Path | None = None, overwrite: bool = False) -> NameModel:
        """A new model of names like `words`, with this one as the background.

        An n-gram or bigram model gives an n-gram of `words` over it (order `order`, default 6, or less
        for a vocabulary too large for it), its weights chosen by cross-validation on `words`; an rnn,
        gru or lstm is fine-tuned on them for
        a number of steps chosen by cross-validation (namesmith.adaptation.adapt). Every word is for training;
        `novel` then means "none of `words`". `where`: labels of a conditional count model, whose plain
        model is the background (the result draws names of those labels). Saved to `out` if given
        (another model there needs `overwrite`). For a shortlist, `more_like` pulls harder and is faster.
        """
        return self._adapted(words, where=where, order=order, seed=seed, out=out, overwrite=overwrite)

    def more_like(self, words: Sequence[str], *, where: Where | None = None, pull: float | None = None,
                  out: str | Path | None = None, overwrite: bool = False) -> NameModel:
        """"More like these": a model of names that resemble `words` (a shortlist), drawn from this one
        pulled towards them (namesmith.adaptation.adapt.more_like: the shortlist's n-gram table with share `pull`
        over this model, no weight fitted, so it is ready in a fraction of a second). `where`: the labels
        of a conditional model the names are to have. Its names are scored (log-probability, percentile)
        by this model, under `where`: how name-like they are, not how like the shortlist. It draws only
        the shortlist's letters unless `prior_letters` is asked for (see `generate`). `pull` defaults to
        namesmith.adaptation.adapt.MORE_LIKE_PULL."""
        from namesmith.adaptation.adapt import MORE_LIKE_PULL

        pull = MORE_LIKE_PULL if pull is None else pull
        tuned = self._adapted(words, where=where, pull=pull, out=out, overwrite=overwrite)
        tuned._scorer = (self, where)
        return tuned

    def _adapted(self, words: Sequence[str], *, where: Where | None, out: str | Path | None, overwrite: bool,
                 order: int | None = None, seed: int = 1337, pull: float | None = None) -> NameModel:
        words = check_words(words, "words")
        if out is not None and (Path(out) / META_FILE).exists() and not overwrite:
            raise ConfigError(f"{out}: already holds a trained model; pass overwrite=True to replace it", field="out")
        if where and self.model.condition is None:
            self.model.given(where)  # says that this model has no labels
        if self.model.condition is not None:  # an adapted model of a conditional one is of `where`'s labels
            where = dict(self.model.condition.check_where(where))
        from namesmith.adaptation.pipeline import adapt_words

        checkpoint, corpus = adapt_words(Checkpoint(self.model, self.vocab, self.meta), self._prepare(words),
                                         self.casing, {} if order is None else {"order": order}, seed=seed, out=out,
                                         where=where or None, pull=pull)
        return type(self)._from(checkpoint, corpus=corpus, directory=out)

    @staticmethod
    def limit_tables(**limits: float) -> None:
        """Bound the exact samplers' tables of every model in this process (generation.exact_cache.TableBudget):
        `builders` (builds at once), `table_bytes` (one build's estimated peak), `cache_bytes` (built tables
        kept) and `build_seconds`; a server sets them from its limits at start."""
        TABLES.configure(**limits)

    @classmethod
    def load(cls, directory: str | Path, *, device: str = "cpu", data: str | None = None) -> NameModel:
        """Load a model directory (checked: format, hashes, vocabulary, weight shapes; nothing unpickled).

        `data`: the training word list, if it moved since training (for novelty and percentiles). A count
        model's directory holds the tables of its plain names (generation.saved_tables) and of classification
        (scoring.classify_tables): on the CPU they answer those requests, and the model itself (and torch) is
        loaded for the first question they cannot answer; each is read on first use (the weights' hash here)."""
        if device != "cpu":  # checked first: a device this machine lacks is refused before the directory is read
            from namesmith.core.device import resolve_device

            return cls._from(load_checkpoint(directory, resolve_device(device)), directory=directory, data=data)
        meta = read_meta(directory)
        if TABLES_KEY in meta:
            vocab = Vocab.saved(meta["vocab"], Path(directory) / META_FILE)
            if checked_without_model(directory, meta, vocab):
                loaded = cls(None, vocab, meta, directory=directory, data=data)
                loaded._tables_entry = meta[TABLES_KEY]
                loaded._classify_tables = saved_classifier(directory, meta, vocab)
                return loaded
        return cls._from(load_checkpoint(directory), directory=directory, data=data)

    @property
    def model(self) -> CharModel:
        """The network or count model (a directory's is loaded on first use: see `load`)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    checkpoint = load_checkpoint(self.directory)
                    if checkpoint.meta.get("weights") != self.meta.get("weights"):
                        raise CheckpointError(f"{self.directory}: holds another model than the one loaded from it; "
                                              "load it again")
                    self._model = checkpoint.model.eval()
        return self._model

    @classmethod
    def _from(cls, checkpoint: Checkpoint, **kwargs: Any) -> NameModel:
        return cls(checkpoint.model, checkpoint.vocab, checkpoint.meta, **kwargs)

    @classmethod
    def ensemble(cls, models: Sequence[NameModel | str | Path], *, out: str | Path | None = None,
                 combine: str = "product", overwrite: bool = False, device: str = "cpu",
                 data: str | None = None) -> NameModel:
        """Trained models (objects or directories) combined into one, saved to `out` if given.

        The members must share their vocabulary, training data and split; the weights are fitted
        on that split's validation words (see namesmith.models.ensemble; `combine` is "product"
        or "mixture"). `data`: the training word list, if it moved since training.
        """
        members = [m if isinstance(m, NameModel) else cls.load(m, device=device, data=data) for m in models]
        if len(members) < 2:
            raise ConfigError("models: an ensemble needs at least two trained models", field="models")
        known = [(str(m.directory) if m.directory is not None else f"model {i}", m.vocab, m.meta)
                 for i, m in enumerate(members, 1)]
        for other in known[1:]:
            check_same_data(known[0], other)
        first = members[0]
        corpus = first.corpus
        from namesmith.models.ensemble import build_ensemble
        from namesmith.scoring.evaluate import evaluate_splits

        combined = build_ensemble([m.model.to(first.model.device) for m in members], corpus, combine)
        meta = {"namesmith_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "data": first.meta["data"], **model_record(combined, first.vocab),
                "members": [{"directory": None if m.directory is None else str(m.directory.resolve()),
                             "description": m.describe(), "metrics": m.metrics} for m in members],
                "parameters": sum(p.numel() for p in combined.parameters()),
                "metrics": evaluate_splits(combined, corpus)}
        result = cls(combined, first.vocab, meta, corpus=corpus, data=first._data_path)
        if out is not None:
            result.save(out, overwrite=overwrite)
            result.directory = Path(out)
        return result

    def calibrate(self, choice: str = "auto") -> dict[str, Any]:
        """Fit the whole-name calibration `choice` asks for ("none", "length" or "auto") on the split the model
        was trained with, in place of the one it has (namesmith.training.calibrate), and recompute the metrics; `save`
        keeps it. Returns what was tried and chosen."""
        if self.meta["data"].get("streamed"):
            raise ConfigError("calibrate: a model of a streamed word list is not calibrated (its words are not "
                              "kept)", field="calibrate")
        from namesmith.training.fitting import calibrate_model, evaluate_corpus

        corpus = self.corpus
        report = calibrate_model(self.model, corpus, choice, self.meta.get("train_config", {}).get("seed", 1337))
        self.meta["calibration_report"] = report
        self.meta.pop("calibration", None)
        self.meta.pop("label_calibrations", None)
        self.meta.update({k: v for k, v in model_record(self.model, self.vocab).items()
                          if k in ("calibration", "label_calibrations")})
        self.meta["metrics"] = evaluate_corpus(self.model, corpus)
        self._plain = self._tables_entry = self._classify_tables = None  # the saved tables are of the model as it was
        self._reference.clear()  # percentiles and exact tables of the model as it was
        self._exact.clear()
        return report

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model directory atomically; a directory holding another model needs `overwrite`."""
        directory = Path(directory)
        if (directory / META_FILE).exists() and not overwrite and not self._saved_in(directory):
            raise ConfigError(f"{directory}: already holds a trained model; pass overwrite=True to replace it",
                              field="directory")
        meta = {k: v for k, v in self.meta.items()  # the model's own record (its calibration too) is written anew
                if k not in ("format", "format_version", "weights", "train_state", "calibration", "label_calibrations")}
        return save_checkpoint(directory, self.model, self.vocab, meta)

    def _saved_in(self, directory: Path) -> bool:
        """Whether `directory` holds this very model (so saving there again loses nothing)."""
        try:
            saved = read_meta(directory)
        except NamesmithError:
            return False
        return all(saved.get(key) == self.meta.get(key) for key in ("created", "model_type", "model_config", "data"))

    # --- what it is ----------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return self.meta["model_type"]

    @property
    def history(self) -> TrainHistory:
        return TrainHistory.from_dict(self.meta.get("history", {}))

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.meta.get("metrics", {})

    @property
    def max_word_length(self) -> int:
        """The longest training name: the default length guard is twice this (see namesmith.generation.config)."""
        return self.meta["data"]["max_word_length"]

    def describe(self) -> str:
        """'lstm', 'lstm + 6-gram' for a network combined with an n-gram, 'ensemble of [...]',
        'sparse-ngram adapted to 30 names' (namesmith.adaptation.adapt), and '... | sex, decade' when conditioned."""
        config = self.meta["model_config"]
        kind = self.model_type
        if kind == "ensemble":
            return describe(kind, config)
        if "adaptation" in self.meta:
            n_words = self.meta["data"].get("n_words", {})
            count = n_words.get("train", "?") if isinstance(n_words, dict) else n_words
            return f"{kind} adapted to {count} names"
        if kind == "ngram-mix":
            ngram = config["ngram"].get("model", config["ngram"])  # a conditional n-gram nests its config
            inner = config["model"].get("model_type") if self.model.labels else config["model_type"]
            kind = f"{inner} + {ngram.get('order', '?')}-gram"
        elif self.model.labels:
            kind = config["model_type"]
        return kind + (f" | {', '.join(self.model.labels)}" if self.model.labels else "")

    @property
    def labels(self) -> dict[str, list[str]]:
        """The labels the model is conditioned on, each with its values ({} for a plain model)."""
        return self._classify_tables.labels if self._model is None and self._classify_tables else self.model.labels

    def info(self) -> dict[str, Any]:
        """What the model is, what it was trained on, and how well it does (JSON-able)."""
        keys = ("namesmith_version", "created", "model_config", "data", "parameters", "metrics",
                "metrics_without_ngram", "members", "resolved_train_config", "complete", "adaptation",
                "open_vocabulary")
        history = self.history
        return {"model_type": self.model_type, "description": self.describe(), "labels": self.labels,
                **{k: self.meta[k] for k in keys if k in self.meta},
                "vocab": "".join(self.vocab.chars),
                "history": {"steps": history.steps, "seconds": history.seconds, "stop_reason": history.stop_reason}}

    # --- the training words, read lazily -----------------------------------------------------------
    @property
    def corpus(self) -> Corpus:
        """The words the model was trained on, split as they were (fingerprint checked)."""
        if self._corpus is None:
            record = self.meta["data"]
            if record.get("streamed"):
                raise DataError(f"{record['path']}: was streamed in training; its words are not held in memory")
            from namesmith.training.provenance import corpus_for_checkpoint

            self._corpus = corpus_for_checkpoint(self.meta, self.vocab, self._data_path)
        return self._corpus

    def _known_words(self) -> KnownWords:
        """The training words (all splits) as sets, built once (and kept in the user's cache, so a large list
        is not read again by the next process: namesmith.generation.novelty): what `novel` and the novelty summary
        check. Raises why when the training words are unavailable."""
        if self._known is None:
            self._known = known_words(self.meta["data"], self._data_path, lambda: KnownWords.of(self.corpus.split))
        return self._known

    def _novelty_words(self) -> tuple[KnownWords | None, str | None]:
        """The training words as sets, or (None, why not) when the word list is unavailable."""
        try:
            return self._known_words(), None
        except NamesmithError as e:
            return None, str(e)

    def training_split(self) -> tuple[Split | None, str | None]:
        """The train/val/test words, or (None, why not) when the word list is unavailable."""
        try:
            return self.corpus.split, None
        except NamesmithError as e:
            return None, str(e)

    # --- how it reads and prints names (its generating and scoring methods: namesmith.namemodel.generating, .scoring)
    @property
    def casing(self) -> str:
        """How names were learned and are printed (see namesmith.core.casing): lower, title, upper or exact."""
        record = self.meta["data"]
        return record.get("casing") or ("lower" if record["lowercase"] else "exact")

    def _prepare(self, names: Sequence[str]) -> list[str]:
        """Names as the model reads them (lowercased when it learned lowercased names)."""
        return fold(list(names), self.casing)

    # --- the first-order table (bigram models) -----------------------------------------------------
    def transition_table(self) -> torch.Tensor:
        """(V, V) P(next | previous), rows = the previous token; ConfigError for models without one."""
        table = self.model.transition_table()
        if table is None:
            raise ConfigError(f"this {self.describe()} model has no bigram table (use a bigram or bigram-counts model)",
                              field="model")
        return table.detach().cpu()

    def pair_counts(self) -> torch.Tensor:
        """(V, V) counts of (previous, next) pairs in the training split."""
        from namesmith.data.pair_counts import count_pairs

        return count_pairs(*self.corpus.word_tensors("train"), self.vocab.size)

    def transitions(self, top: int = 10) -> list[Transition]:
        """The seed's sanity check: the strongest transitions beside their training frequency."""
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}", field="top")
        from namesmith.scoring.report import strongest_transitions

        return strongest_transitions(self.transition_table(), self.pair_counts(), self.vocab, top)

    def __repr__(self) -> str:
        where = f", directory={str(self.directory)!r}" if self.directory else ""
        return f"NameModel({self.describe()}, vocab={self.vocab.size}{where})"
