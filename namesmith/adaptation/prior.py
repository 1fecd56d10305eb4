"""The background prior: what names in general look like, learned once from the catalogue.

A list of 30 names says little about which letters follow which; the catalogue's 122,000 names
(namesmith.data.catalogue: `us`, `world` and `israel`, every distinct name once, casing folded as
namesmith.core.casing does, so `Mary` and `mary` are one name) say a lot, in 20 scripts. namesmith.adaptation.adapt
puts a small list on top of such a prior. Two priors exist:

- **n-gram** (`kind="ngram"`): an order-6 interpolated Kneser-Ney model of every catalogue name
  (Chen & Goodman's discounts), stored sparsely (namesmith.models.sparse_ngram: 1,000 characters ×
  290,000 contexts would not fit a dense table), and beside it one such model per group of names
  (`GROUPS`: `us` by sex and era, `israel` by sector and decade, `world` by locale) as components
  of a mixture. Alone, the prior is the model of all names; adapting to a list re-weighs the
  mixture towards the groups the list resembles (namesmith.adaptation.adapt). Built in a few seconds.
- **neural** (`kind="gru"`): a GRU (256 units) trained on the catalogue names with the usual
  recipe (namesmith.training.trainer) within `NEURAL_PRIOR_TRAIN`'s budget of a few minutes, for
  fine-tuning on small lists.

Neither is shipped: each is built the first time it is needed and cached as an ordinary model
directory (`namesmith sample -m` reads it) under the cache directory: `$NAMESMITH_CACHE` if set,
else `$XDG_CACHE_HOME/namesmith`, else `~/.cache/namesmith`. The directory's name holds a key
computed from the catalogue files' sha256 and the recipe, so a new catalogue or recipe builds a new
prior instead of reusing a stale one; a cached prior that fails its checks (namesmith.training.checkpoint) is
rebuilt. A prior directory is built beside its final name and renamed into place, so a crash or a
second process never leaves a half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch

from namesmith.core.casing import fold, resolve
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.history import TrainHistory
from namesmith.core.io import cache_dir, sha256_file
from namesmith.core.version import __version__
from namesmith.data.catalogue import DATASETS, load_dataset
from namesmith.data.words import Corpus, check_words, encode_words, words_fingerprint
from namesmith.models import model_class
from namesmith.models.backoff_table import BackoffTable, kn_table
from namesmith.models.base import ngram_windows
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.scoring.evaluate import evaluate_splits
from namesmith.training.checkpoint import Checkpoint, load_checkpoint, model_record, save_checkpoint
from namesmith.training.trainer import Trainer

log = logging.getLogger("namesmith")

PRIOR_SETS = ("us", "world", "israel")  # the catalogue sets the prior learns (all their distinct names)
# How each set is cut into the groups that are the prior's mixture components: the labels whose
# values make a group ("era": the decade as before 1950, 1950-1989 or from 1990).
# `israel` by decade, not era: a list of today's Israeli names leans on the recent decades' groups
# (bench_small_lists.py, he_IL: +0.017 at k = 100 against sector alone, +0.006 against sector and era);
# `us` by era: by decade (28 groups) cost the surnames 0.008 at k = 100.
GROUPS: dict[str, tuple[str, ...]] = {"us": ("sex", "era"), "world": ("locale",), "israel": ("sector", "decade")}
PRIOR_ORDER = 6
PRIOR_RECIPE_VERSION = 4  # bump when a recipe below changes: cached priors are then rebuilt
KINDS = ("ngram", "gru")
NEURAL_PRIOR_CONFIG: dict[str, Any] = {"n_embd": 64, "n_hidden": 256, "n_layer": 1, "dropout": 0.0}
# Every field set (nothing left to a model's defaults): the prior is the same wherever it is built,
# up to the time budget, which binds only on a slow machine.
NEURAL_PRIOR_TRAIN = TrainConfig(max_steps=6000, learning_rate=3e-3, learning_rate_end=1e-4, batch_size=128,
                                 weight_decay=0.1, warmup_steps=100, grad_clip=1.0, eval_every=500, patience=4,
                                 time_budget=300.0, ema=0.999, batching="by-length", ngram_mix=0, seed=1337)


def _era(decade: str) -> str:
    """A decade label ("1950s") as one of three eras: before 1950, 1950-1989, from 1990."""
    return "-1949" if decade < "1950s" else ("1950-1989" if decade < "1990s" else "1990-")


def catalogue_groups(sets: Sequence[str] = PRIOR_SETS, *, exclude_locales: Collection[str] = (),
                     exclude_names: Collection[str] = ()) -> dict[str, list[str]]:
    """The distinct names of each group of the catalogue (see GROUPS: "us:F:1990-", "world:ru_RU"...),
    each set's casing folded (namesmith.core.casing). A name may belong to several groups.

    For held-out studies (benchmarks/bench_small_lists.py), so that a prior never sees the names it
    is evaluated on: `exclude_locales` leaves out those locales of `world`, and `exclude_names`
    leaves those names out of every group (matched casefolded: "Noa" excludes "noa" and "NOA").
    Leaving a locale out is not enough, as other sets share its names (the `israel` set holds
    nearly every name of `world`'s he_IL). A group left empty is dropped.
    """
    excluded = {name.casefold() for name in exclude_names}
    groups: dict[str, list[str]] = {}
    for name in sets:
        table = load_dataset(name)
        casing = resolve(list(dict.fromkeys(table.names)), "auto")
        columns = [_era(d) for d in table.labels["decade"]] if "decade" in table.labels else None
        keys = [table.labels[c] if c != "era" else columns for c in GROUPS.get(name, ())]
        by_group: dict[str, list[str]] = {}
        for i, word in enumerate(table.names):
            if "locale" in table.labels and table.labels["locale"][i] in exclude_locales:
                continue
            by_group.setdefault(":".join([name, *(k[i] for k in keys)]), []).append(word)
        for group in sorted(by_group):
            words = [w for w in dict.fromkeys(fold(by_group[group], casing)) if w.casefold() not in excluded]
            if words:
                groups[group] = words
    return groups


def catalogue_words(sets: Sequence[str] = PRIOR_SETS, *, exclude_locales: Collection[str] = (),
                    exclude_names: Collection[str] = ()) -> list[str]:
    """The distinct names of the catalogue sets (see `catalogue_groups`), in one list."""
    groups = catalogue_groups(sets, exclude_locales=exclude_locales, exclude_names=exclude_names)
    return list(dict.fromkeys(word for words in groups.values() for word in words))


def _data_record(words: list[str], source: str, fingerprint: str, split: bool) -> dict[str, Any]:
    """The checkpoint's data record for a prior (its words are not a file a model can re-read)."""
    return {"path": source, "sha256": fingerprint, "case": "lower", "casing": "lower", "lowercase": True,
            "encoding": "utf-8", "max_line_length": 64, "dedupe": True, "split_seed": 42, "split": split,
            "n_words": len(words), "words_sha256": words_fingerprint(words),
            "max_word_length": max(map(len, words))}


def build_ngram_prior(groups: dict[str, list[str]], *, order: int = PRIOR_ORDER, source: str = "words",
                      fingerprint: str | None = None, check: bool = True) -> Checkpoint:
    """Sparse Kneser-Ney n-grams of order `order`: one of all the groups' names together, and one of
    each group's (nothing is held out). The model is the first alone (mixture weights 1, 0, ...);
    namesmith.adaptation.adapt re-weighs the mixture to fit a list. `check`: refuse words that are not names
    (off for the catalogue's, checked when it is built)."""
    for label, words in groups.items():
        if check:
            check_words(words, f"prior group {label!r}")
    start = time.perf_counter()
    words = list(dict.fromkeys(word for group in groups.values() for word in group))
    corpus = Corpus.from_words(words, split=False)
    V = corpus.vocab.size

    def table(words: list[str]) -> BackoffTable:
        return kn_table(ngram_windows(*encode_words(words, corpus.vocab), order), V)

    components = [table(words)] + ([table(g) for g in groups.values()] if len(groups) > 1 else [])
    mixture = torch.zeros(len(components))
    mixture[0] = 1.0
    model = SparseNGram.from_tables(V, order, [], components, mixture).eval()
    seconds = time.perf_counter() - start
    meta = {"namesmith_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "data": _data_record(words, source, fingerprint or words_fingerprint(words), split=False),
            "prior": {"kind": "ngram", "source": source, "order": order, "n_words": len(words),
                      "components": ["all", *groups][: len(components)],
                      "recipe_version": PRIOR_RECIPE_VERSION, "seconds": round(seconds, 2)},
            "metrics": {}, "history": TrainHistory(steps=1, seconds=seconds).to_dict(), "complete": True,
            "parameters": 0}
    return Checkpoint(model, corpus.vocab, {**meta, **model_record(model, corpus.vocab)})


def build_neural_prior(words: Sequence[str], *, model_type: str = "gru", config: dict[str, Any] | None = None,
                       train_config: TrainConfig = NEURAL_PRIOR_TRAIN, source: str = "words",
                       fingerprint: str | None = None, device: str | torch.device = "cpu") -> Checkpoint:
    """A recurrent network trained on `words` (80/10/10 split: validation keeps the best weights)."""
    words = check_words(list(words), "prior words")
    cls = model_class(model_type)
    if not cls.neural:
        raise ConfigError(f"a neural prior needs a neural model type, not {model_type}", field="model")
    corpus = Corpus.from_words(words)
    torch.manual_seed(train_config.seed)
    model = cls(corpus.vocab.size, cls.config_class(**{**NEURAL_PRIOR_CONFIG, **(config or {})})).to(device)
    config_ = train_config.with_defaults(model.train_defaults(train_config))
    log.info(f"building the {model_type} prior on {len(corpus.split.train):,} names (once; at most "
             f"{config_.time_budget:.0f} s)")
    history = Trainer(model.train(), corpus, config_).fit()
    model.eval()
    meta = {"namesmith_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "data": _data_record(words, source, fingerprint or words_fingerprint(words), split=True),
            "prior": {"kind": model_type, "source": source, "n_words": len(words),
                      "recipe_version": PRIOR_RECIPE_VERSION},
            "train_config": config_.to_dict(), "resolved_train_config": config_.to_dict(),
            "metrics": evaluate_splits(model, corpus), "history": history.to_dict(), "complete": True,
            "parameters": sum(p.numel() for p in model.parameters())}
    return Checkpoint(model, corpus.vocab, {**meta, **model_record(model, corpus.vocab)})


def catalogue_key(kind: str, sets: Sequence[str] = PRIOR_SETS) -> str:
    """What a cached prior depends on: the catalogue files, the recipe and its version."""
    recipe = {"kind": kind, "sets": list(sets), "groups": GROUPS, "version": PRIOR_RECIPE_VERSION,
              "order": PRIOR_ORDER, "files": {name: sha256_file(DATASETS[name].path()) for name in sets}}
    if kind != "ngram":
        recipe.update(config=NEURAL_PRIOR_CONFIG, train=NEURAL_PRIOR_TRAIN.to_dict())
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def catalogue_prior(kind: str = "ngram", *, sets: Sequence[str] = PRIOR_SETS,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """The prior of the catalogue (see the module docstring), from the cache or built and cached now.

    `sets`: the catalogue sets it learns (PRIOR_SETS unless a study asks for fewer)."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", field="kind")
    unknown = [name for name in sets if name not in DATASETS]
    if unknown or not sets:
        raise ConfigError(f"sets must name catalogue sets ({', '.join(DATASETS)}), got {list(sets)!r}", field="sets")
    key = catalogue_key(kind, sets)
    directory = cache_dir() / f"prior-{kind}-{key[:16]}"
    if (directory / "namesmith.json").is_file():
        try:
            return load_checkpoint(directory, device)
        except CheckpointError as e:
            log.warning(f"the cached prior {directory} is unusable ({e}); building it again")
    source = "catalogue:" + "+".join(sets)
    if kind == "ngram":
        prior = build_ngram_prior(catalogue_groups(sets), source=source, fingerprint=key, check=False)
    else:
        prior = build_neural_prior(catalogue_words(sets), model_type=kind, source=source, fingerprint=key,
                                   device=device)
    _save_into_cache(directory, prior)
    log.info(f"cached the {kind} prior in {directory}")
    return prior


def _save_into_cache(directory: Path, prior: Checkpoint) -> None:
    """Write the prior beside `directory`, then rename it into place (another process may win the race)."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    except OSError as e:
        log.warning(f"cannot cache the prior in {directory.parent} ({e.strerror or e}); it is used uncached")
        return
    try:
        save_checkpoint(building, prior.model, prior.vocab, prior.meta)
        if directory.exists():  # a stale or broken one (a good one was loaded above), or a racing build
            shutil.rmtree(directory, ignore_errors=True)
        os.replace(building, directory)
    except (OSError, CheckpointError) as e:
        log.warning(f"cannot cache the prior in {directory} ({e}); it is used uncached")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(building)


def load_prior(spec: str | Path, kind: str = "ngram", *, device: str | torch.device = "cpu") -> Checkpoint:
    """`spec` "catalogue" (or "auto"): the catalogue's prior of this kind; else a model directory."""
    if str(spec) in ("auto", "catalogue"):
        return catalogue_prior(kind, device=device)
    return load_checkpoint(spec, device)
