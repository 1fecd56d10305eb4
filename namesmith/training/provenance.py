"""What a model was trained on: its data read, recorded in its directory with the request, and read again.

`read_corpus` reads a word list or a table into its split corpus; `data_record` says how to find and check
it again (`corpus_for_checkpoint`, `words_for_checkpoint`), and `data_difference` whether two models
learned the same words (ensembles, distillation). `request_record` is what was asked for: the same request
may replace its own model directory, another one may not (`check_overwrite`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from namesmith.core.casing import folds
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError, NamesmithError
from namesmith.core.version import __version__
from namesmith.data.labelled import LabelledCorpus, labelled_corpus
from namesmith.data.sources import is_catalogue, read_labelled_source, read_source, source_fingerprint
from namesmith.data.tables import WEIGHTINGS
from namesmith.data.words import Corpus, DataConfig, split_words, words_fingerprint
from namesmith.models.base import CharModel
from namesmith.training.checkpoint import META_FILE, read_meta

GIVEN_WORDS = "<words>"  # the data path recorded for words given in Python


INLINE_WORDS = 10_000  # such word lists up to this long are kept in the model directory


# What models must agree on to be combined (ensembles) or to teach one another (distillation): the
# words they learned and how those were split
SAME_DATA = ("sha256", "words_sha256", "split_seed", "split", "casing", "condition", "weighting")


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


def request_record(model_type: str, data: DataConfig, train_config: TrainConfig, model_config: dict[str, Any] | None,
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
