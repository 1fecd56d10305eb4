"""`NameModel`'s scoring: each name's log-probability, NLL per character and percentile among the training
names (under `where`), the posterior over a conditional model's labels, and the NLL of a word list or of the split
the model was trained with. `NameModel` inherits these methods (namesmith.namemodel)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesmith.core.errors import ConfigError
from namesmith.core.vocab import UnknownPolicy
from namesmith.data.sources import read_source, source_fingerprint
from namesmith.data.words import DataConfig
from namesmith.scoring.classify import Classification, classify

# The modules that use torch are imported in the methods that need them: a count model loads and draws its plain
# names from its saved tables without torch (namesmith.generation.saved_tables, docs/startup.md).
if TYPE_CHECKING:
    from namesmith.core.conditional import Where
    from namesmith.scoring.score import NameScore


class Scoring:
    """Scoring, classifying and evaluating names with a `NameModel` (a mixin of it: the methods read
    the model's state)."""

    def score(self, names: Sequence[str], *, where: Where | None = None) -> list[NameScore]:
        """Each name's log-probability, NLL per character and percentile among the training names.

        A name the model cannot read gets an `error` instead; percentiles are None when the training
        words are unavailable (`training_split()` says why). `where` scores under some labels of a
        conditional model, P(name | where), and places each name among the training names of those
        labels.
        """
        if isinstance(names, str):
            raise ConfigError("names must be a list of names, not one string", field="names")
        from namesmith.core.conditional import where_key
        from namesmith.scoring.open_vocabulary import open_word_log_probs
        from namesmith.scoring.score import reference_scores, score_names

        where = self._own_where(where)
        if self._scorer is not None:  # "more like these": scored by the model the names were drawn from
            scorer, scorer_where = self._scorer
            return scorer.score(names, where=scorer_where)
        model = self.model.given(where)
        key = where_key(self.model.condition.check_where(where)) if self.model.condition is not None else ()
        if key not in self._reference:
            with self._reference_lock:
                split, _ = self.training_split()
                if key not in self._reference and split is not None:
                    self._reference[key] = reference_scores(model, self._reference_words(where), self.vocab)
        prepared = self._prepare(names)
        reference = self._reference.get(key)
        # characters outside the vocabulary: an adapted model scores them with its fallback (adaptation.adapt)
        scores = score_names(model, self.vocab, prepared, reference, unknown=self._unknown("fail"),
                             fallback=functools.partial(open_word_log_probs, model, vocab=self.vocab))
        return [s if s.name == name else dataclasses.replace(s, name=name) for s, name in zip(scores, names)]

    def _unknown(self, otherwise: UnknownPolicy) -> UnknownPolicy:
        """The unknown-character policy (`Vocab.readable`) of this model's scores: "fallback" where it has an
        open vocabulary (adapted models), else `otherwise`."""
        return "fallback" if self.open_vocabulary else otherwise

    @property
    def open_vocabulary(self) -> bool:
        """Whether names with characters outside the vocabulary are scored (adapted models: adaptation.adapt)."""
        return "open_vocabulary" in self.meta

    def _reference_words(self, where: Where | None) -> list[str]:
        """The training names of the labels `where` asks for (all of them without `where`)."""
        from namesmith.data.labelled import LabelledCorpus

        corpus = self.corpus
        if not where or not isinstance(corpus, LabelledCorpus):
            return corpus.split.train
        return corpus.train_words_where(self.model.condition, where)

    def keep_classification_tables(self) -> None:
        """Build and keep what classifies many names fastest (a conditional count model's component tables, within
        its memory bound), as a server does before its first request (same posteriors: models.conditional_counts)."""
        keep = getattr(self.model, "keep_component_tables", None)
        if keep is not None:
            keep()

    def classify(self, names: Sequence[str]) -> list[Classification]:
        """Per name, the posterior over each conditioned label: `.labels` = {label: {value: P(value | name)}}.

        P(value | name) ∝ P(name | value) · P(value) (see namesmith.scoring.classify); values from most to least
        likely, each label's probabilities summing to 1. A ConfigError for a model without labels; a name it
        cannot read gets an `error` instead, as in `score`."""
        if isinstance(names, str):
            raise ConfigError("names must be a list of names, not one string", field="names")
        tables = self._classify_tables if self._model is None else None  # saved: no torch (scoring.classify_tables)
        results = classify(tables.tables if tables else self.model, self.vocab, self._prepare(names))
        return [r if r.name == name else dataclasses.replace(r, name=name) for r, name in zip(results, names)]

    def evaluate(self, words: Sequence[str] | None = None, *, data: str | Path | None = None,
                 data_options: dict[str, Any] | None = None) -> dict[str, Any]:
        """NLL per character and perplexity: on the split the model was trained with by default, on
        `words`, or on the word list `data` (its own split when it is the training list; `data_options`
        are DataConfig fields for reading it, e.g. encoding)."""
        from namesmith.models.nll import mean_nll_per_char, target_counts
        from namesmith.scoring.evaluate import Evaluation, evaluate, evaluate_streamed
        from namesmith.scoring.open_vocabulary import open_word_log_probs
        from namesmith.training.fitting import evaluate_corpus

        if words is None and data is not None:
            record = self.meta["data"]
            if source_fingerprint(data) != record["sha256"]:
                words = read_source(DataConfig(path=str(data), case="exact", **(data_options or {})))[0]
            else:
                self._data_path = str(data)
        if words is not None:
            words = self._prepare(words)
            self.vocab.readable(words, self._unknown("raise"), source=str(data or "words"))
            if self.open_vocabulary:  # unknown characters cost the fallback of namesmith.adaptation.adapt
                log_probs = open_word_log_probs(self.model, words, self.vocab)
                result = Evaluation(mean_nll_per_char(log_probs, words), len(words),
                                    int(target_counts(words).sum())).to_dict()
                return {"all": {**result, "unknown_chars": sum(c not in self.vocab.stoi for w in words for c in w)}}
            return {"all": evaluate(self.model, words, self.vocab).to_dict()}
        if self.meta["data"].get("streamed"):
            return evaluate_streamed(self.model, self.vocab, self.meta["data"], self._data_path)
        return evaluate_corpus(self.model, self.corpus)
