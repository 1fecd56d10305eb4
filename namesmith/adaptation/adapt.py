"""Names in the style of a few examples: a small list adapted onto a background prior.

Thirty names are too few to learn which letters follow which; a model of names in general
(namesmith.adaptation.prior: the catalogue's 122,000 names, or any trained model) knows that already, and the
list says how its names differ. This module builds such adapted models.

**N-gram**, in three steps (`adapt_ngram`):

1. *Which names does the list resemble?* The background's mixture of Kneser-Ney n-grams is re-weighed to
   the list by EM (namesmith.adaptation.background).
2. *How does the list differ?* The list's counts sit on top of that background as a hierarchical
   Dirichlet / Pitman-Yor-style smoother whose weights are chosen by cross-validation on the list itself,
   and how far to trust the table by nested cross-validation (namesmith.adaptation.list_table).
3. *How long are the list's names, and which scripts follow which?* A class table on top knows the
   classes of the context's tokens (the end, a character's script) (namesmith.adaptation.class_table).

The result is a `SparseNGram` (namesmith.models.sparse_ngram): the list's table over the mixture,
and the class table over both, still a Markov chain of order `order`, so temperature, top-k/p,
exact constraints (where the chain is small enough), novelty and scoring work as for any n-gram.
Measured by benchmarks/bench_small_lists.py; see docs/short-lists.md.

**Neural.** A pretrained recurrent network is fine-tuned on the list, for a number of steps chosen by
cross-validation (`adapt_neural`: namesmith.adaptation.fine_tune).

**Vocabulary.** The adapted model reads the list's characters and every background character of the
scripts the list uses (`adapted_vocab`: namesmith.adaptation.background). Other characters — ones no model
has seen — get a documented fallback when scoring and evaluating: namesmith.scoring.open_vocabulary.

**More like these** (`more_like`, NameModel.more_like): for a shortlist the question is not which
model predicts held-out names best but which names resemble these; the shortlist's table sits over
the background with fixed weights (no cross-validation), in a fraction of a second. A conditional
background lends its plain model of the labels asked for (`where`).

**Own letters.** A model adapted to a list draws only the list's own characters (`OwnLetters` of
namesmith.models.own_letters, unless `prior_letters`): the background's other letters stay in the
vocabulary, for scoring and for the background's probabilities, but a list of 30 elvish names should
not make names with `ľ` or `ə`.

**When.** `NameModel.train(..., prior="auto")` (the default; `--prior auto`) adapts an ngram of
fewer than `ADAPT_BELOW` training names onto the catalogue's n-gram prior (built in seconds);
`prior="catalogue"` adapts always, an ngram onto that prior and a gru onto the catalogue's GRU
prior (built once, in minutes, so never unasked); `prior=DIR` always adapts, onto the trained model
in DIR; `prior="none"` never adapts. A table conditioned on labels or weighted is not adapted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from namesmith.adaptation.background import background_model, component_probs, fit_mixture
from namesmith.adaptation.class_table import fit_class_table, held_out_class_shares, token_classes
from namesmith.adaptation.fine_tune import NEURAL_TYPES, adapt_neural
from namesmith.adaptation.list_table import backoff_table, fit_list_table, list_levels, word_folds
from namesmith.adaptation.prior import load_prior
from namesmith.core.errors import ConfigError
from namesmith.core.minimize import with_autograd
from namesmith.core.vocab import Vocab
from namesmith.data.ngram_keys import DEFAULT_ORDER, default_order
from namesmith.data.words import encode_words
from namesmith.models.base import CharModel, ngram_windows
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.training.checkpoint import Checkpoint

log = logging.getLogger("namesmith")

ADAPT_BELOW = 1000  # prior="auto" adapts lists with fewer training names than this
NGRAM_TYPES = ("ngram",)  # adapted as n-grams (a sparse-ngram), from a count-model background
CATALOGUE_PRIOR = {"ngram": "ngram", "gru": "gru"}  # model type -> its catalogue prior (prior="catalogue")
AUTO_PRIOR = ("ngram",)  # prior="auto" adapts these: their prior builds in seconds (the GRU's in minutes)
# "more like these" (`more_like`): the shortlist's table's share and its fixed Kneser-Ney weights, chosen
# on benchmarks/bench_more_like_these.py's shortlists (similarity to the list, and the base model's percentile)
MORE_LIKE_PULL = 0.9
MORE_LIKE_DISCOUNT = 0.75
MORE_LIKE_STRENGTH = 20.0  # β of the list's empty context (its letter frequencies: the background knows better) ...
MORE_LIKE_DECAY = 4.0  # ... divided by this per token of context (a shortlist's long contexts are its style)


@with_autograd
def adapt_ngram(words: Sequence[str], vocab: Vocab, background: CharModel, background_vocab: Vocab, *,
                order: int = DEFAULT_ORDER, seed: int = 0, labels: Sequence[str] | None = None
                ) -> tuple[SparseNGram, dict[str, Any]]:
    """An n-gram of `words` (in `vocab`) over the background model (see the module docstring).

    A background that is a bare mixture (the catalogue prior) has its mixture re-weighed for the
    list (first for the list's tokens, then for their held-out predictions: `fit_list_table`); one
    with lists already chained on it keeps its weights. `labels` name the background's components
    in the record.
    """
    start = time.perf_counter()
    base_model = background_model(background, background_vocab, vocab, order)
    x, y = encode_words(list(words), vocab)
    windows = ngram_windows(x, y, order)
    word_of = torch.arange(len(x)).unsqueeze(1).expand_as(y)[y >= 0]
    fold_of_word, k = word_folds(len(x), seed)
    fold_of = fold_of_word[word_of]
    record: dict[str, Any] = {}
    if not base_model.tables and len(base_model.components) > 1:  # a bare mixture: re-weigh it for the list
        probs = component_probs(base_model, windows)
        table, mixture, cv, weights = fit_list_table(windows, fold_of, k, probs, fit_mixture(probs), vocab.size + 1)
        keep = mixture > 0
        names = list(labels) if labels is not None else [str(i) for i in range(len(keep))]
        record["mixture"] = {name: round(w, 4) for name, w, on in zip(names, mixture.tolist(), keep.tolist()) if on}
        components = [c for c, on in zip(base_model.components, keep) if on]
        base_model = SparseNGram.from_tables(vocab.size, order, [], components, mixture[keep]).eval()
    else:  # one model (or lists already chained on a mixture): its weights stay
        with torch.no_grad():
            probs = base_model.next_token_probs(windows[:, :-1])
        background_prob = probs.gather(1, windows[:, -1:]).double()  # (M, 1): one "component"
        table, _, cv, weights = fit_list_table(windows, fold_of, k, background_prob,
                                               torch.ones(1, dtype=torch.float64), vocab.size + 1)
    class_of, class_names = token_classes(vocab, words)
    shares = held_out_class_shares(windows, fold_of, k, base_model, class_of, cv["levels"], *weights)
    class_table, record["classes"] = fit_class_table(windows, fold_of, k, class_of, shares, class_names)
    model = SparseNGram.from_tables(vocab.size, order, [table, *base_model.tables], list(base_model.components),
                                    base_model.mixture,
                                    classes=None if class_table is None else (class_of, class_table)).eval()
    record = {"method": "ngram", "order": order, **cv, **record, "seconds": round(time.perf_counter() - start, 3)}
    log.info(f"adapted an order-{order} n-gram to {len(words)} names: cross-validated NLL {record['cv_nll']:.4f} "
             f"per character ({record['folds']} folds; the background alone {record['cv_nll_background']:.4f}); "
             f"nested, with the table's share {record['table_share']:.2f}: {record['nested_cv_nll']:.4f}"
             + (f"; the class table ({', '.join(record['classes']['names'])}) gains "
                f"{record['classes']['cv_gain']:.4f} more" if class_table is not None else ""))
    return model, record


# --- choosing and running an adaptation ---------------------------------------------------------------
COUNT_BACKGROUNDS = ("ngram", "sparse-ngram", "bigram-counts", "bigram")  # an n-gram adapts from these


def choose_background(prior: str | Path | None, model_type: str, n_train: int, *,
                      device: str | torch.device = "cpu", plain: bool = True) -> Checkpoint | None:
    """The background a `model_type` trained on `n_train` names adapts from, or None to train it as
    usual (the rule of the module docstring: "auto" adapts short lists of the model types that have
    a catalogue prior; "none" never adapts; a model directory always does). A list that is not
    `plain` (a table conditioned on labels, or weighted) is not adapted: adaptation learns one
    distribution of names."""
    if prior is None or str(prior) == "none":
        return None
    if not plain:
        if str(prior) == "auto":
            return None
        raise ConfigError("prior: a table conditioned on labels or weighted by counts cannot be adapted onto a "
                          "prior (yet); use prior none, or condition none with weighting none", field="prior")
    if str(prior) == "auto":
        if model_type not in AUTO_PRIOR or n_train >= ADAPT_BELOW:
            return None
        log.info(f"{n_train} training names (fewer than {ADAPT_BELOW:,}): adapting the catalogue's "
                 f"{CATALOGUE_PRIOR[model_type]} prior to them (prior='none' trains on them alone)")
        return load_prior("catalogue", CATALOGUE_PRIOR[model_type], device=device)
    if str(prior) == "catalogue":
        if model_type not in CATALOGUE_PRIOR:
            raise ConfigError(f"prior: the catalogue has priors for {', '.join(CATALOGUE_PRIOR)} models, not "
                              f"{model_type}", field="prior")
        return load_prior("catalogue", CATALOGUE_PRIOR[model_type], device=device)
    if model_type not in NGRAM_TYPES + NEURAL_TYPES:
        raise ConfigError(f"prior: a {model_type} model cannot be adapted to a list (adapted: "
                          f"{', '.join(NGRAM_TYPES + NEURAL_TYPES)}); use prior none", field="prior")
    background = load_prior(prior, device=device)
    check_background(background.meta["model_type"], model_type, str(prior))
    return background


def check_background(background_type: str, model_type: str, where: str) -> None:
    """Refuse a background of a kind that `model_type` cannot adapt from."""
    if model_type in NGRAM_TYPES and background_type not in COUNT_BACKGROUNDS:
        raise ConfigError(f"prior: {where} holds a {background_type} model; an n-gram adapts from a count model "
                          f"({', '.join(COUNT_BACKGROUNDS)})", field="prior")
    if model_type in NEURAL_TYPES and background_type != model_type:
        raise ConfigError(f"prior: {where} holds a {background_type} model; a {model_type} is fine-tuned from a "
                          f"pretrained {model_type}", field="prior")


def describe_background(background: Checkpoint, where: str | Path | None = None) -> dict[str, Any]:
    """What an adapted model records about its background (enough to know it again)."""
    meta = background.meta
    record = {"model_type": meta["model_type"], "created": meta.get("created"),
              "data": meta.get("data", {}).get("path")}
    if "prior" in meta:
        record.update(source=meta["prior"].get("source"), key=meta["data"].get("sha256"))
    if where is not None and str(where) not in ("auto", "catalogue"):
        record["directory"] = str(Path(where).resolve())
    return record


def adapt(words: Sequence[str], vocab: Vocab, background: Checkpoint, model_options: dict[str, Any], *,
          seed: int = 0, callback: Callable[[int, float], None] | None = None, where: Any = None,
          pull: float | None = None) -> tuple[CharModel, dict[str, Any]]:
    """A model of `words` (in `vocab`) adapted from `background`: an n-gram over a count model, a
    fine-tuned copy of a network; with `pull`, the shortlist's table over the count model with that
    share (`more_like`). `where`: a conditional background's labels, whose plain model is the
    background. `model_options`: only `order` applies, to an n-gram."""
    extra = sorted(set(model_options) - ({"order"} if not background.model.neural else set()))
    if extra:
        raise ConfigError(f"{extra[0]} does not apply when adapting to a prior (the model's form is the prior's; "
                          "its weights are chosen by cross-validation); use prior none to set it", field=extra[0])
    model = background.model
    if where:
        if model.neural:
            raise ConfigError("where: a network is adapted to a list as a whole, not under labels; adapt a "
                              "count model (ngram) of the table for names of some labels", field="where")
        model = model.given(where)  # refuses labels the model does not have
    if model.neural:
        if pull is not None:
            raise ConfigError(f"pull: more like these needs a count model (ngram, bigram), not {model.model_type}",
                              field="pull")
        return adapt_neural(words, vocab, model, background.vocab, seed=seed, callback=callback)
    order = model_options.get("order", default_order(vocab.size))
    if pull is not None:
        return more_like(words, vocab, model, background.vocab, order=order, pull=pull)
    labels = background.meta.get("prior", {}).get("components")
    return adapt_ngram(words, vocab, model, background.vocab, order=order, seed=seed, labels=labels)


# --- "more like these": a strong pull towards a shortlist, in a fraction of a second -------------------
def more_like(words: Sequence[str], vocab: Vocab, background: CharModel, background_vocab: Vocab, *,
              order: int, pull: float = MORE_LIKE_PULL) -> tuple[SparseNGram, dict[str, Any]]:
    """An n-gram of a shortlist over `background`, pulled towards the shortlist by fixed weights.

    `adapt_ngram` asks which model predicts *held-out* names of a list best; with a shortlist of
    three to ten names that question has little evidence and its answer is the background nearly
    unchanged (the builtin model's names for `aurelia, aurora, amara...`: `kiah, ke, chan`). "More
    like these" asks for names that resemble the shortlist: the list's interpolated Kneser-Ney table
    sits over the background with share `pull`. At each context the list saw, its counts (discount
    MORE_LIKE_DISCOUNT) weigh against strength β_j = MORE_LIKE_STRENGTH / MORE_LIKE_DECAY^j for a
    context of j tokens: the list's letter frequencies count little (β_0 = 20 against a list's 50
    letters), its long contexts — the fragments that make its style — nearly all (β_5 = 0.02). What
    the list leaves goes to the background at the full context (not to the list's shorter one), so
    a name leaves the shortlist's fragments where real names lead and stays name-like. No weight is
    fitted: it costs the list's counts, and remapping the background's tables only when `vocab` is
    not the background's own.
    """
    start = time.perf_counter()
    if not 0 < pull <= 1:
        raise ConfigError(f"pull must be in (0, 1], got {pull!r}", field="pull")
    base_model = background_model(background, background_vocab, vocab, order)
    x, y = encode_words(list(words), vocab)
    windows = ngram_windows(x, y, order)
    base = vocab.size + 1
    levels = list_levels(windows, torch.zeros(len(windows), dtype=torch.long), 1, base, max_levels=order)
    n = len(levels)
    discounts = torch.full((n,), MORE_LIKE_DISCOUNT, dtype=torch.float64)
    strengths = MORE_LIKE_STRENGTH * MORE_LIKE_DECAY ** -torch.arange(n, dtype=torch.float64)
    shares = torch.zeros(n, dtype=torch.float64)  # what the list leaves goes to the background's full context
    table = backoff_table(levels, discounts, strengths, shares, base)
    # its share: P = pull · table + (1 - pull) · background. With the shares 0 only the longest context the
    # list saw speaks (α's, and `to_base` to the background; the empty context through `backoff`), so the
    # share scales those in place
    empty = (table.keys == 0).float()
    table.alpha *= pull
    table.backoff = pull * table.backoff + (1 - pull) * empty
    table.to_base = pull * table.to_base + (1 - pull) * (1 - empty)
    model = SparseNGram.from_tables(vocab.size, order, [table, *base_model.tables], list(base_model.components),
                                    base_model.mixture).eval()
    record = {"method": "more-like", "order": order, "pull": pull, "discount": MORE_LIKE_DISCOUNT,
              "strength": MORE_LIKE_STRENGTH, "seconds": round(time.perf_counter() - start, 3)}
    return model, record
