"""Names in the style of a few examples: a small list adapted onto a background prior.

Thirty names are too few to learn which letters follow which; a model of names in general
(namesmith.adaptation.prior: the catalogue's 122,000 names, or any trained model) knows that already, and the
list says how its names differ. This module builds such adapted models.

**N-gram**, in three steps.

1. *Which names does the list resemble?* The catalogue prior is a mixture of Kneser-Ney n-grams:
   one of all its names and one per group (US names by sex and era, Israeli names by sector and
   decade, each `world` locale: namesmith.adaptation.prior). The mixture weights are re-fitted to the list by
   EM (with a small Dirichlet pull towards the all-names model), so a list of Turkish names leans
   on the Azerbaijani and Turkish-like groups, a list of US surnames on the boys' names of recent
   decades (they are often surnames). A background that is a single model keeps it as it is.
2. *How does the list differ?* The list's counts sit on top of that background as a hierarchical
   Dirichlet / Pitman-Yor-style smoother (MacKay & Peto 1995; Teh 2006), the background's
   prediction at the full context taking the place of the uniform distribution at the bottom:

       P_(-1)(w | h) = P_background(w | h)
       P_j(w | h) = (max(c(h_j w) - D_j, 0) + (D_j · u(h_j) + β_j) · B_j(w | h)) / (c(h_j) + β_j)
       B_j(w | h) = ρ_j · P_(j-1)(w | h) + (1 - ρ_j) · P_background(w | h)

   for j = 0 .. order-1, where h_j is the last j tokens of the history, c are the list's counts
   (continuation counts below the longest level, as Kneser-Ney's), u(h_j) the number of distinct
   tokens seen after h_j in the list, and a context the list never saw passes P_(j-1) through. A
   large strength β_j trusts what is below, a small one the list; the share ρ_j says whether what
   is below is the list's shorter context (which knows the list, but not where in the name it is)
   or the background at the full context. The 3·order weights (D_j, β_j, ρ_j) are chosen by
   **cross-validation on the list itself**: leave-one-out for lists of at most `LOO_BELOW` names,
   else `FOLDS`-fold; every held-out token is predicted from the counts of the other folds (the
   counts of every fold are computed at once, from differences) and the weights minimise their
   total negative log-likelihood. A level at which fewer than `MIN_EVIDENCE` held-out tokens had
   their context seen in the other folds cannot be validated, so it and the levels above it are
   left out.

   The mixture of step 1 is then fitted again, to the list's tokens as the adapted model predicts
   them held out: a held-out token's probability is a + b · P_background(w | h), a and b set by the
   other folds' counts and the weights, so it is a mixture of the components' a + b · P_c and EM
   fits the weights to it; the list's weights are then chosen again over the new mixture
   (`MIXTURE_REFITS` times). The mixture so serves the tokens that the list's table leaves to the
   background, not those it predicts already.

   The held-out predictions that chose the weights are optimistic (with 30 names, leave-one-out
   may set a level to trust the list entirely), so how far to trust the table is chosen by **nested
   cross-validation**: the folds are grouped into `OUTER_FOLDS` outer folds; the weights are chosen
   again without each (by cross-validation on the others), its tokens predicted with them, and the
   model is λ · P_table + (1 - λ) · P_background, λ fitted to those honest predictions. The table
   is the mean (bagging) of the tables with the whole list's weights and with each outer fit's.

3. *How long are the list's names, and which scripts follow which?* The n-gram knows a context
   only through its characters: after two Chinese characters it never saw together it backs off to
   what follows the second one anywhere, and forgets that every name of the list ends there. A
   **class table** on top knows the classes of the context's tokens (the end, or the script of a
   character, with capitals and marks apart where most of the list's names have them:
   `token_classes`), so how far into the name it is (up to order-1 characters), which scripts and
   spaces follow which and where vowel signs go; it replaces the model's share of each class after
   a class context by a hierarchical Dirichlet smoother of the list's class counts over that share
   (`fit_class_table`; its strengths chosen by cross-validation against the adapted model's
   held-out rows, and the table kept only if it helps there).

The result is a `SparseNGram` (namesmith.models.sparse_ngram): the list's table over the mixture,
and the class table over both, still a Markov chain of order `order`, so temperature, top-k/p,
exact constraints (where the chain is small enough), novelty and scoring work as for any n-gram.
Measured by benchmarks/bench_small_lists.py; see docs/short-lists.md.

**Neural.** A pretrained recurrent network (the catalogue's GRU prior, or any trained rnn/gru/lstm)
is fine-tuned on the list: its embedding and output rows are cut to the adapted vocabulary (new
characters start from the mean row), then AdamW runs on the list. How many steps is chosen by
cross-validation (`NEURAL_FOLDS` folds: each fine-tunes on the other folds and is evaluated on its own
every `NEURAL_EVAL_EVERY` steps; the step with the lowest mean held-out loss wins, 0 meaning the prior
itself), then the network is fine-tuned on the whole list for that many steps.

**Vocabulary.** The adapted model reads the list's characters and every background character of
the scripts the list uses (Latin for an elvish list, Cyrillic for a Russian one; script = the first
word of the Unicode name of a letter or mark), plus the background's punctuation and spaces (and its
invisible format characters only if the list has one). Names
with characters the list never had are thus scored by the background's knowledge of them, and
constraints may use them. Other characters — ones no model has seen — get a documented fallback
when scoring and evaluating: namesmith.scoring.open_vocabulary.

**More like these** (`more_like`, NameModel.more_like): for a shortlist the question is not which
model predicts held-out names best but which names resemble these; the shortlist's table sits over
the background with fixed weights (no cross-validation), in a fraction of a second. A conditional
background lends its plain model of the labels asked for (`where`).

**Own letters.** A model adapted to a list draws only the list's own characters (`OwnLetters`, unless
`prior_letters`): the background's other letters stay in the vocabulary, for scoring and for the
background's probabilities, but a list of 30 elvish names should not make names with `ľ` or `ə`.

**When.** `NameModel.train(..., prior="auto")` (the default; `--prior auto`) adapts an ngram of
fewer than `ADAPT_BELOW` training names onto the catalogue's n-gram prior (built in seconds);
`prior="catalogue"` adapts always, an ngram onto that prior and a gru onto the catalogue's GRU
prior (built once, in minutes, so never unasked); `prior=DIR` always adapts, onto the trained model
in DIR; `prior="none"` never adapts. A table conditioned on labels or weighted is not adapted.
"""

from __future__ import annotations

import collections
import copy
import functools
import logging
import math
import threading
import time
import unicodedata
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from namesmith.adaptation.prior import load_prior
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import BOUNDARY, Vocab, script_of
from namesmith.data.ngram_keys import DEFAULT_ORDER, default_order
from namesmith.data.words import encode_words
from namesmith.models.base import CharModel, DelegatingModel
from namesmith.models.conditional_counts import ConditionalCounts
from namesmith.models.nll import (
    batch_loss,
    mean_nll,
)
from namesmith.models.sparse_ngram import ROWS_CHUNK, BackoffTable, SparseNGram, ngram_windows, suffix_keys
from namesmith.training.checkpoint import Checkpoint

log = logging.getLogger("namesmith")

ADAPT_BELOW = 1000  # prior="auto" adapts lists with fewer training names than this
NGRAM_TYPES = ("ngram",)  # adapted as n-grams (a sparse-ngram), from a count-model background
NEURAL_TYPES = ("rnn", "gru", "lstm")  # adapted by fine-tuning a pretrained network of the same type
CATALOGUE_PRIOR = {"ngram": "ngram", "gru": "gru"}  # model type -> its catalogue prior (prior="catalogue")
AUTO_PRIOR = ("ngram",)  # prior="auto" adapts these: their prior builds in seconds (the GRU's in minutes)
LOO_BELOW = 100  # lists of at most this many names are cross-validated leave-one-out
FOLDS = 10  # else k-fold with this many folds
STRENGTH_RANGE = (0.01, 1e6)  # β: from "trust the list" to "trust what is below" (bounded: the search stays finite)
MIN_EVIDENCE = 10  # held-out tokens whose context was seen, for a level's weights to be validated
MIXTURE_PSEUDO_COUNT = 5.0  # tokens of the whole prior in the mixture's Dirichlet prior
EM_STEPS = 300
MIN_COMPONENT_WEIGHT = 1e-3  # lighter mixture components are dropped from an adapted model
MIXTURE_REFITS = 1  # times the mixture is re-fitted to the held-out predictions of the adapted model
OUTER_FOLDS = 5  # nested cross-validation: groups of the list's folds that choose the table's share λ
BAGGING_CELLS = 1 << 21  # (context, token) cells the bagged table is assembled in at a time
CLASS_MIN_GAIN = 1e-3  # held-out nats per token the class table must gain to be kept (fit_class_table)
CLASS_SPLIT_SHARE = 0.5  # of a list's names with capitals (marks) for them to be a class of their own
CLASS_GRID, CLASS_SWEEPS = 25, 3  # its strengths: a log grid over STRENGTH_RANGE, sweeps of coordinate descent
NEURAL_FOLDS = 5
NEURAL_EVAL_EVERY = 25
NEURAL_MAX_STEPS = 1000
NEURAL_PATIENCE = 4  # evaluations without a better held-out loss end a fold
NEURAL_BATCH = 32
NEURAL_LR = 1e-3
# "more like these" (`more_like`): the shortlist's table's share and its fixed Kneser-Ney weights, chosen
# on benchmarks/bench_more_like_these.py's shortlists (similarity to the list, and the base model's percentile)
MORE_LIKE_PULL = 0.9
MORE_LIKE_DISCOUNT = 0.75
MORE_LIKE_STRENGTH = 20.0  # β of the list's empty context (its letter frequencies: the background knows better) ...
MORE_LIKE_DECAY = 4.0  # ... divided by this per token of context (a shortlist's long contexts are its style)


def with_autograd(fit: Callable) -> Callable:
    """Run `fit` with autograd on: adapting fits weights by gradient, and may be asked for under
    torch.inference_mode or no_grad (a server answering a request)."""
    @functools.wraps(fit)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(False), torch.enable_grad():
            return fit(*args, **kwargs)

    return run


# --- vocabulary ------------------------------------------------------------------------------------
def adapted_vocab(words: Sequence[str], background: Vocab) -> Vocab:
    """The list's characters and the background's characters of the scripts the list uses (and its
    punctuation and spaces; its format characters only if the list has one)."""
    own = set().union(*map(set, words))
    scripts = {script_of(c) for c in own} | {"COMMON"}
    return Vocab.from_chars(own | {c for c in background.chars if script_of(c) in scripts})


# --- the background as back-off tables --------------------------------------------------------------
def background_parts(model: CharModel) -> tuple[list[BackoffTable], list[BackoffTable], torch.Tensor]:
    """A trained count model as (chained tables, mixture components, mixture weights) of back-off
    tables in its own token ids (see namesmith.models.sparse_ngram).

    A sparse n-gram is made of them already (an adapted one's class table is left out: the new list
    gets its own); a dense n-gram stores every seen context's whole distribution (back-off weight 0);
    a bigram model its (V, V) table.
    """
    if isinstance(model, ConditionalCounts):
        model = model.given()  # conditioned on labels: its model of every name, the labels marginalised
    if isinstance(model, SparseNGram):
        return ([copy.deepcopy(t).cpu() for t in model.tables], [copy.deepcopy(t).cpu() for t in model.components],
                model.mixture.detach().cpu().clone())
    V = model.vocab_size
    if model.model_type == "ngram":
        keys = model.context_keys.cpu()
        probs = model.next_token_logprobs.detach().cpu().exp()
    elif model.transition_table() is not None:
        keys = torch.arange(V + 1)  # the empty context (nothing stored), then one row per previous token
        probs = torch.cat([torch.zeros(1, V), model.transition_table().detach().cpu()])
    else:
        raise ConfigError(f"a {model.model_type} model cannot be the background of an n-gram (use an ngram, "
                          "sparse-ngram or bigram model)", field="prior")
    R = len(keys)
    backoff = torch.zeros(R)
    if model.model_type != "ngram":
        backoff[0] = 1.0
    table = BackoffTable().set(keys, backoff, None, torch.arange(R + 1) * V, torch.arange(V).repeat(R),
                               probs.reshape(-1))
    return [], [table], torch.ones(1)


def remap_table(table: BackoffTable, old: Vocab, new: Vocab, max_context: int) -> BackoffTable:
    """`table` in the ids of vocabulary `new`: contexts holding a character `new` lacks, or longer
    than `max_context` tokens, are dropped, as are entries of characters it lacks (rows are
    renormalised when used). Both vocabularies are sorted, so the keys stay sorted."""
    if old == new and (not len(table.keys) or int(table.keys.max()) < (old.size + 1) ** max_context):
        return table  # nothing to drop: "more like these" keeps the background's own vocabulary
    token_map = torch.tensor([BOUNDARY] + [new.stoi.get(c, -1) for c in old.chars])
    B_old, B_new = old.size + 1, new.size + 1
    keys, new_keys = table.keys.clone(), torch.zeros_like(table.keys)
    keep = torch.ones(len(keys), dtype=torch.bool)
    place, length = 1, 0
    while bool((keys > 0).any()):
        length += 1
        digit = keys % B_old
        present = digit > 0
        token = token_map[(digit - 1).clamp(min=0)]
        keep &= ~present | ((token >= 0) & (length <= max_context))
        new_keys += torch.where(present, (token + 1) * place, 0)
        keys //= B_old
        place *= B_new
    owner = torch.repeat_interleave(torch.arange(len(keep)), table.offsets[1:] - table.offsets[:-1])
    next_tokens = token_map[table.next.long()]
    keep_entry = keep[owner] & (next_tokens >= 0)
    counts = torch.zeros(len(keep), dtype=torch.long).index_add_(0, owner, keep_entry.long())[keep]
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    new_keys = new_keys[keep]
    assert bool((new_keys[1:] > new_keys[:-1]).all()), "a monotone character map keeps keys sorted"
    return BackoffTable().set(new_keys, table.backoff[keep], table.to_base[keep], offsets, next_tokens[keep_entry],
                              table.alpha[keep_entry])


def background_model(model: CharModel, vocab: Vocab, new_vocab: Vocab, order: int) -> SparseNGram:
    """The background `model` (vocabulary `vocab`) over `new_vocab`, at most order `order`.

    Kept while `model` lives (BACKGROUNDS_KEPT per model): "more like these" adapts the same model (or
    its plain model of one `where`, which a conditional model keeps too) to one shortlist after another,
    and the conversion, and the dense tables the back-off tables build on first use, cost more than
    the shortlist's own table. The tables are shared, read-only, by the models built on them.
    """
    key = (vocab.chars, new_vocab.chars, order)
    with _BACKGROUNDS_LOCK:
        kept = _BACKGROUNDS.setdefault(model, collections.OrderedDict())
        if key in kept:
            kept.move_to_end(key)
            return kept[key]
    tables, components, mixture = background_parts(model)
    tables = [remap_table(t, vocab, new_vocab, order - 1) for t in tables]
    components = [remap_table(t, vocab, new_vocab, order - 1) for t in components]
    built = SparseNGram.from_tables(new_vocab.size, order, tables, components, mixture).eval()
    with _BACKGROUNDS_LOCK:
        kept[key] = built
        while len(kept) > BACKGROUNDS_KEPT:
            kept.popitem(last=False)
    return built


BACKGROUNDS_KEPT = 2  # converted backgrounds kept per model (`background_model`)
_BACKGROUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(vocabularies, order): SparseNGram}
_BACKGROUNDS_LOCK = threading.Lock()


def component_probs(background: SparseNGram, windows: torch.Tensor) -> torch.Tensor:
    """(M, C) the probability of each n-gram's target (windows (M, order)) under each mixture component."""
    K = background.context_size
    keys = suffix_keys(windows[:, windows.size(1) - 1 - K : -1], background.base)
    last = windows[:, -2] if K else None
    probs = []
    with torch.no_grad():
        for table in background.components:
            uniform = torch.full((len(windows), background.vocab_size), 1.0 / background.vocab_size)
            probs.append(table.add_rows(uniform, keys, last).gather(1, windows[:, -1:]).squeeze(1))
    return torch.stack(probs, 1).double()


def fit_mixture(probs: torch.Tensor) -> torch.Tensor:
    """Mixture weights (C,) that best predict the list's tokens, from the components' probabilities (M, C).

    EM (Dempster et al. 1977) for the weights of a fixed mixture, with MIXTURE_PSEUDO_COUNT tokens
    of the first component (all the prior's names) as a Dirichlet prior, so a short list does not
    put all its weight on one small group by chance. The components never saw the list, so its
    tokens are held-out data for them; the weights are fitted on every token (fitting them again
    without each cross-validation fold changed the benchmark's figures by less than 0.003 nats, at
    50 times the cost). `fit_list_table` fits them again, to `probs` that are the adapted model's
    held-out predictions. Weights below MIN_COMPONENT_WEIGHT are dropped.
    """
    pseudo = torch.zeros(probs.size(1), dtype=torch.float64)
    pseudo[0] = MIXTURE_PSEUDO_COUNT
    weights = torch.full((probs.size(1),), 1.0 / probs.size(1), dtype=torch.float64)
    for _ in range(EM_STEPS):
        responsibility = probs * weights
        responsibility /= responsibility.sum(1, keepdim=True)
        weights = responsibility.sum(0) + pseudo
        weights /= weights.sum()
    weights = torch.where(weights >= MIN_COMPONENT_WEIGHT, weights, 0.0)
    return weights / weights.sum()


# --- the n-gram: the list's counts over the background -----------------------------------------------
def _folds(n_words: int, seed: int) -> tuple[torch.Tensor, int]:
    """Each word's fold: leave-one-out for short lists, else FOLDS folds (a seeded shuffle)."""
    k = n_words if n_words <= LOO_BELOW else FOLDS
    order = torch.randperm(n_words, generator=torch.Generator().manual_seed(seed))
    fold = torch.empty(n_words, dtype=torch.long)
    fold[order] = torch.arange(n_words) % k
    return fold, k


def _level_counts(gram_keys: torch.Tensor, base: int, fold_of: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """The distinct grams and contexts of one level (contexts of j tokens) and the grams' counts in
    each fold (k, G)."""
    grams, gram_of = torch.unique(gram_keys, return_inverse=True)
    contexts, context_of = torch.unique(gram_keys // base, return_inverse=True)
    per_fold = torch.zeros(k, len(grams)).index_put_((fold_of, gram_of), torch.ones(len(gram_keys)), accumulate=True)
    return {"grams": grams, "gram_of": gram_of, "contexts": contexts, "context_of": context_of,
            "gram_context": torch.searchsorted(contexts, grams // base), "total": per_fold.sum(0),
            "others": per_fold.sum(0) - per_fold}  # (k, G): counts of the other folds


def _continuation(level: dict[str, torch.Tensor], longer: dict[str, torch.Tensor], base: int, j: int) -> None:
    """Replace a level's counts by continuation counts (Kneser & Ney 1995): for each gram, the number
    of distinct tokens seen before it, i.e. of distinct grams one level up that end with it."""
    suffix = torch.searchsorted(level["grams"], longer["grams"] % base ** (j + 1))
    level["others"] = torch.zeros_like(level["others"]).index_add_(1, suffix, (longer["others"] > 0).float())
    level["total"] = torch.zeros_like(level["total"]).index_add_(0, suffix, (longer["total"] > 0).float())


def _features(level: dict[str, torch.Tensor], fold_of: torch.Tensor) -> dict[str, torch.Tensor]:
    """For each token: c(h w), c(h) and u(h) (distinct tokens after h) of the *other* folds (`held_*`),
    and for the distinct grams and contexts those of the whole list (`all_*`)."""
    others, total, gram_context = level["others"], level["total"], level["gram_context"]
    k, C = others.size(0), len(level["contexts"])
    context_others = torch.zeros(k, C).index_add_(1, gram_context, others)
    types_others = torch.zeros(k, C).index_add_(1, gram_context, (others > 0).float())
    gram_of, context_of = level["gram_of"], level["context_of"]
    features = {"held_gram": others[fold_of, gram_of], "held_context": context_others[fold_of, context_of],
                "held_types": types_others[fold_of, context_of], "all_gram": total,
                "all_context": torch.zeros(C).index_add_(0, gram_context, total),
                "all_types": torch.zeros(C).index_add_(0, gram_context, (total > 0).float())}
    return {**{name: t.double() for name, t in features.items()},
            **{name: level[name] for name in ("grams", "contexts", "gram_context")}}


def _adapted_prob(background_prob: torch.Tensor, levels: list[dict[str, torch.Tensor]], discounts: torch.Tensor,
                  strengths: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """P of each held-out token: the recursion of the module docstring on the other folds' counts."""
    prob = background_prob
    for j, level in enumerate(levels):  # shortest first
        d, b, rho = discounts[j], strengths[j], shares[j]
        below = rho * prob + (1 - rho) * background_prob
        mixed = ((level["held_gram"] - d).clamp(min=0) + (d * level["held_types"] + b) * below) / (
            level["held_context"] + b)
        prob = torch.where(level["held_context"] > 0, mixed, prob)
    return prob


def _weights(theta: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per level, a discount D in (0, 1), a strength β in STRENGTH_RANGE and a share ρ in (0, 1) from
    3n unbounded parameters."""
    low, high = (math.log(v) for v in STRENGTH_RANGE)
    return theta[:n].sigmoid(), (low + (high - low) * theta[n : 2 * n].sigmoid()).exp(), theta[2 * n :].sigmoid()


def _held_out_nll(background_prob: torch.Tensor, levels: list[dict[str, torch.Tensor]], n: int,
                  theta: torch.Tensor) -> torch.Tensor:
    """The mean NLL of the held-out tokens under the weights `theta` (what cross-validation minimises)."""
    return -_adapted_prob(background_prob, levels, *_weights(theta, n)).log().mean()


def minimise(loss_of: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, steps: int = 300,
             lr: float = 0.2) -> torch.Tensor:
    """The parameters (a few) minimising a smooth loss: Adam (Kingma & Ba 2015) with a cosine-decayed
    step, written out because torch.optim's classes import torch._dynamo on first use, which takes
    seconds, longer than the whole adaptation. Keeps the best parameters seen."""
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    best, best_loss = theta.clone(), math.inf
    for t in range(1, steps + 1):
        theta = theta.detach().requires_grad_()
        with torch.enable_grad():
            loss = loss_of(theta)
            (grad,) = torch.autograd.grad(loss, theta)
        if loss.item() < best_loss:
            best, best_loss = theta.detach().clone(), loss.item()
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        step = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        theta = theta.detach() - step * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
    return best


def list_levels(windows: torch.Tensor, fold_of: torch.Tensor, k: int, base: int,
                max_levels: int | None = None) -> list[dict[str, torch.Tensor]]:
    """The list's counts, level by level (contexts of 0, 1, ... tokens), for the whole list and for
    each token without its fold (see `_features`); levels with too little held-out evidence
    (MIN_EVIDENCE) and those above them are left out, or all beyond `max_levels`. Below the longest
    level the counts are continuation counts, as Kneser-Ney's."""
    order = windows.size(1)
    gram_keys = ((windows.flip(1) + 1) * base ** torch.arange(order)).cumsum(1)  # column j: j context tokens
    counts = []
    for j in range(order if max_levels is None else min(order, max_levels)):
        level = _level_counts(gram_keys[:, j], base, fold_of, k)
        if max_levels is None and int((_features(level, fold_of)["held_context"] > 0).sum()) < MIN_EVIDENCE:
            break  # nothing to validate this level's weights on: it and longer contexts are left out
        counts.append(level)
    for j in range(len(counts) - 2, -1, -1):
        _continuation(counts[j], _level_counts(gram_keys[:, j + 1], base, fold_of, k), base, j)
    return [_features(level, fold_of) for level in counts]


def fit_list_table(windows: torch.Tensor, fold_of: torch.Tensor, k: int, component_probs: torch.Tensor,
                   mixture: torch.Tensor, base: int
                   ) -> tuple[BackoffTable, torch.Tensor, dict[str, Any], tuple[torch.Tensor, float]]:
    """The list's table (see the module docstring), its weights chosen by cross-validation, and the
    background's mixture weights re-fitted for what that table leaves to the background.

    `windows` (M, order) are the list's n-grams, `fold_of` (M,) the fold of each one's word (k
    folds), `component_probs` (M, C) each target's probability under each mixture component and
    `mixture` (C,) their weights as fitted to the tokens alone (`fit_mixture`), `base` the key
    base (V + 1). A held-out token's probability under the adapted model is a + b · P_background,
    a and b set by the other folds' counts and the weights, so it is a mixture of the components'
    a + b · P_c: EM fits the weights to those held-out predictions (`MIXTURE_REFITS` times, the
    list's weights fitted again after each), so the mixture serves the tokens the list's table does
    not already predict. The table's share λ and the weights it averages come from
    `nested_cross_validation`. Returns the table, the mixture, a record of the cross-validation
    (folds, weights, λ, held-out NLL per character of the adapted model, nested and not, and of the
    re-weighed background alone), and the whole list's weights (θ) with λ (`held_out_class_shares`).
    """
    levels = list_levels(windows, fold_of, k, base)
    n = len(levels)
    theta = torch.zeros(3 * n, dtype=torch.float64)
    background_prob = component_probs @ mixture
    for refit in range(MIXTURE_REFITS + 1):
        if n:  # else no level could be validated: the list's table stays empty, the background alone
            theta = minimise(functools.partial(_held_out_nll, background_prob, levels, n), theta)
        if refit == MIXTURE_REFITS or not n or len(mixture) == 1:
            break
        with torch.no_grad():  # the held-out probability as a + b · P_background
            weights, zeros = _weights(theta, n), torch.zeros(len(windows), dtype=torch.float64)
            offset = _adapted_prob(zeros, levels, *weights)
            slope = _adapted_prob(zeros + 1, levels, *weights) - offset
        mixture = fit_mixture(offset.unsqueeze(1) + slope.unsqueeze(1) * component_probs)
        background_prob = component_probs @ mixture
    share, nested_nll, thetas = nested_cross_validation(windows, fold_of, k, background_prob, n, base)
    with torch.no_grad():
        discounts, strengths, shares = _weights(theta, n)
        cv_nll = _held_out_nll(background_prob, levels, n, theta).item()
        table = _bagged_table([_table(levels, *_weights(t, n), base) for t in [theta, *thetas]], base, share)
    record = {"folds": k, "levels": n, "table_share": round(share, 4), "nested_cv_nll": round(nested_nll, 4),
              "discounts": [round(v, 4) for v in discounts.tolist()],
              "strengths": [round(v, 4) for v in strengths.tolist()],
              "shares": [round(v, 4) for v in shares.tolist()], "cv_nll": round(cv_nll, 4),
              "cv_nll_background": round(-background_prob.log().mean().item(), 4), "tokens": len(windows)}
    return table, mixture, record, (theta, share)


def nested_cross_validation(windows: torch.Tensor, fold_of: torch.Tensor, k: int, background_prob: torch.Tensor,
                            n: int, base: int) -> tuple[float, float, list[torch.Tensor]]:
    """The table's share λ (the adapted model is λ · P_table + (1 - λ) · P_background), chosen by nested
    cross-validation. The list's folds are grouped into OUTER_FOLDS outer folds; for each, the table's
    weights are chosen by cross-validation on the other outer folds (on their own folds), and its
    tokens are predicted from the other outer folds' counts with those weights. Unlike the predictions
    that chose the weights, these are honest, so λ, fitted to them by EM, says how far the table is to
    be trusted. Returns λ, the held-out NLL per token at λ, and the weights (θ) fitted without each
    outer fold (averaged in the table: `_bagged_table`)."""
    if not n:  # no level validated: no table to share in, the background alone
        return 1.0, -background_prob.log().mean().item(), []
    outer_k = min(OUTER_FOLDS, k)
    outer_of = fold_of % outer_k  # folds are a seeded shuffle of the words: so are their groups
    outer = list_levels(windows, outer_of, outer_k, base, max_levels=n)
    table_prob = torch.zeros_like(background_prob)
    thetas = []
    for o in range(outer_k):
        inner = outer_of != o
        inner_fold = torch.unique(fold_of[inner], return_inverse=True)[1]
        levels = list_levels(windows[inner], inner_fold, int(inner_fold.max()) + 1, base, max_levels=n)
        theta = minimise(functools.partial(_held_out_nll, background_prob[inner], levels, n),
                         torch.zeros(3 * n, dtype=torch.float64))
        thetas.append(theta)
        with torch.no_grad():
            table_prob[~inner] = _adapted_prob(background_prob, outer, *_weights(theta, n))[~inner]
    share = 0.5  # (1 is a fixed point of EM)
    for _ in range(EM_STEPS):
        mixed = share * table_prob + (1 - share) * background_prob
        share = (share * table_prob / mixed).mean().item()
    nll = -(share * table_prob + (1 - share) * background_prob).log().mean().item()
    return share, nll, thetas


def _bagged_table(tables: list[BackoffTable], base: int, share: float) -> BackoffTable:
    """One table predicting λ · (the mean of `tables`) + (1 - λ) · P_background, λ = `share`. The tables
    store the same contexts with other weights (the whole list's fit and those without each outer
    fold: averaging them, as bagging does (Breiman 1996), tames a weight that one fit set to "trust the
    list entirely"). A mean of back-off chains is no back-off chain, so each stored context holds its
    whole distribution, affine in the background's: a + b · P_background (α = a, to_base = b, back-off
    weight 0). The next token still depends on the longest stored suffix of the history only."""
    if len(tables) == 1 and share == 1.0:  # nothing to average or share (no level was validated, say)
        return tables[0]
    keys = tables[0].keys
    V = base - 1
    length = torch.zeros_like(keys)
    rest = keys.clone()
    while bool((rest > 0).any()):
        length += (rest > 0).long()
        rest //= base
    lengths = torch.arange(int(length.max()) + 1)
    rows_at_once = max(1, BAGGING_CELLS // V)  # (rows, V) at a time: memory bounded whatever the vocabulary
    slope = torch.zeros(len(keys), dtype=torch.float64)
    entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (row, token, a) where a > 0
    for start in range(0, len(keys), rows_at_once):
        part, part_length = keys[start : start + rows_at_once], length[start : start + rows_at_once]
        suffixes = torch.where(lengths <= part_length.unsqueeze(1), part.unsqueeze(1) % base**lengths, -1)
        last = (part % base - 1).clamp(min=0)
        uniform, first = torch.full((len(part), V), 1.0 / V), torch.zeros(len(part), V)
        first[:, 0] = 1.0
        offset = torch.zeros(len(part), V, dtype=torch.float64)
        for table in tables:  # each row over two bases: a + b / V, and a + b · [w = 0] (a exactly, but at 0)
            on_uniform = table.add_rows(uniform.clone(), suffixes, last).double()
            on_first = table.add_rows(first.clone(), suffixes, last).double()
            b = (on_first[:, 0] - on_uniform[:, 0]) / (1 - 1 / V)
            on_first[:, 0] -= b
            offset += on_first.clamp(min=0)
            slope[start : start + len(part)] += b
        offset *= share / len(tables)
        row, token = (offset > 1e-9).nonzero(as_tuple=True)
        entries.append((row + start, token, offset[row, token]))
    slope = share * slope / len(tables) + (1 - share)
    row, token, a = (torch.cat(column) for column in zip(*entries))
    return BackoffTable.from_parts(keys, torch.zeros(len(keys)), keys[row] * base + token + 1, a,
                                   base, slope)


def _table(levels: list[dict[str, torch.Tensor]], discounts: torch.Tensor, strengths: torch.Tensor,
           shares: torch.Tensor, base: int) -> BackoffTable:
    """The list's table from the whole list's counts and the chosen weights."""
    keys, backoff, to_base, gram_keys, alpha = [], [], [], [], []
    for j, level in enumerate(levels):  # contexts of j tokens: keys stay sorted level after level
        d, b, rho, total = discounts[j], strengths[j], shares[j], level["all_context"]
        left = (d * level["all_types"] + b) / (total + b)  # the mass the list leaves to what is below it
        keys.append(level["contexts"])
        backoff.append(left * rho if j else left)  # the shortest context's "shorter" is the background
        to_base.append(left * (1 - rho) if j else torch.zeros_like(left))
        gram_keys.append(level["grams"])
        alpha.append((level["all_gram"] - d).clamp(min=0) / (total[level["gram_context"]] + b))
    if not levels:  # no level validated: the empty context passes everything to the background
        return BackoffTable()
    return BackoffTable.from_parts(torch.cat(keys), torch.cat(backoff), torch.cat(gram_keys), torch.cat(alpha), base,
                                   torch.cat(to_base))


# --- the class table: how long the list's names are, and which scripts follow which ------------------
def token_classes(vocab: Vocab, words: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
    """(V,) each token's class, and the classes' names: 0 the end token ("END"), then one per script
    of the vocabulary's characters (`script_of`: punctuation and spaces are "COMMON"), with its
    capitals and its marks apart ("LATIN CAPITAL", "TAMIL MARK") where at least CLASS_SPLIT_SHARE
    of the list `words` have such a character: product names capitalise inside their names, and
    the vowel signs and viramas of Indic scripts follow consonants, in nearly every name; a list
    whose names only now and then have one (Arabic names and their vowel marks) would learn little
    of where they go, and rule them out wherever its few never had one."""
    def split(c: str) -> str:
        return (script_of(c) + (" CAPITAL" if c.isupper() else "")
                + (" MARK" if unicodedata.category(c)[0] == "M" else ""))

    in_names = collections.Counter(cls for word in words for cls in {split(c) for c in word})

    def class_of(c: str) -> str:
        return split(c) if in_names[split(c)] >= CLASS_SPLIT_SHARE * len(words) else script_of(c)

    names = ["END", *sorted({class_of(c) for c in vocab.chars})]
    return torch.tensor([0] + [names.index(class_of(c)) for c in vocab.chars]), names


def held_out_class_shares(windows: torch.Tensor, fold_of: torch.Tensor, k: int, background: SparseNGram,
                          class_of: torch.Tensor, n: int, theta: torch.Tensor, share: float) -> torch.Tensor:
    """(M, C) how the adapted model without each token's fold shares the next token among the classes:
    the list's table from the other folds' counts (weights θ, share λ) over `background`. What the
    class table's weights are chosen against (`fit_class_table`); the whole rows (M, V) are never
    kept, ROWS_CHUNK at a time."""
    base, K, C = background.base, windows.size(1) - 1, int(class_of.max()) + 1
    tables: dict[int, BackoffTable] = {}
    for f in range(k) if n else ():  # the list's table without each fold (its counts, the whole list's weights)
        others = fold_of != f
        levels = list_levels(windows[others], torch.zeros(int(others.sum()), dtype=torch.long), 1, base, max_levels=n)
        tables[f] = _table(levels, *_weights(theta, n), base)
    shares = torch.zeros(len(windows), C, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(windows), ROWS_CHUNK):
            contexts, folds = windows[start : start + ROWS_CHUNK, :K], fold_of[start : start + ROWS_CHUNK]
            rows = background.next_token_probs(contexts)
            for f in folds.unique().tolist() if n else ():
                mine = folds == f
                below = rows[mine]
                table_rows = tables[f].add_rows(below.clone(), suffix_keys(contexts[mine], base),
                                                contexts[mine, -1] if K else None)
                rows[mine] = share * table_rows + (1 - share) * below
            shares[start : start + len(rows)] = torch.zeros(len(rows), C, dtype=torch.float64).index_add_(
                1, class_of, rows.double())
    return shares


def _class_probs(shares: torch.Tensor, counts: list[torch.Tensor], strengths: torch.Tensor) -> torch.Tensor:
    """(M, C) the class table's distributions: from `shares` (M, C), through each level's counts (M, C)
    of the classes seen after the token's class context (0, 1, ... classes long), with strength β_j."""
    probs = shares / shares.sum(1, keepdim=True)
    for n, b in zip(counts, strengths):
        probs = (n + b * probs) / (n.sum(1, keepdim=True) + b)
    return probs


def fit_class_table(windows: torch.Tensor, fold_of: torch.Tensor, k: int, class_of: torch.Tensor,
                    shares: torch.Tensor, names: Sequence[str]) -> tuple[BackoffTable | None, dict[str, Any]]:
    """The class table on top of the adapted model (namesmith.models.sparse_ngram: `SparseNGram.by_class`),
    or None where it does not help.

    The n-gram knows a character's context only through the characters themselves: after two
    Chinese characters it has rarely seen together, it backs off to what follows the second
    one anywhere, and forgets that the list's names all end there. The class table knows the
    sequence of classes (`token_classes`: the end, each script, its capitals and marks) of the
    context: how long the names are (up to order-1 characters: the context holds the boundary),
    which scripts and spaces follow which, and where vowel signs go. Its distribution after a
    class context is a hierarchical Dirichlet smoother of the list's class counts, contexts of 0,
    1, ... order-1 classes, over the adapted model's own share of each class,
    P_j = (n_j + β_j · P_(j-1)) / (N_j + β_j); the β_j (in STRENGTH_RANGE) are
    chosen by cross-validation on the same folds as the table's, against the held-out shares
    (`held_out_class_shares`), by coordinate descent over a grid from "no class table" (β = the
    largest strength; gradient steps from the middle found poor local minima). The table is kept if
    it gains at least CLASS_MIN_GAIN nats per held-out token."""
    C, cw = shares.size(1), class_of[windows]
    keys = suffix_keys(cw[:, :-1], C + 1)  # (M, order): each token's class context, 0 .. order-1 classes long
    target = cw[:, -1]
    levels, held = [], []
    for j in range(keys.size(1)):
        contexts, context_of = torch.unique(keys[:, j], return_inverse=True)
        per_fold = torch.zeros(k, len(contexts), C, dtype=torch.float64).index_put_(
            (fold_of, context_of, target), torch.ones(len(target), dtype=torch.float64), accumulate=True)
        total = per_fold.sum(0)
        levels.append((contexts, total))
        held.append((total - per_fold)[fold_of, context_of])
    grid = torch.logspace(math.log10(STRENGTH_RANGE[0]), math.log10(STRENGTH_RANGE[1]), CLASS_GRID,
                          dtype=torch.float64)

    def loss(strengths: torch.Tensor) -> float:
        return -_class_probs(shares, held, strengths).gather(1, target.unsqueeze(1)).log().mean().item()

    betas = torch.full((len(levels),), STRENGTH_RANGE[1], dtype=torch.float64)  # from "no class table"
    best = loss(betas)
    for _ in range(CLASS_SWEEPS):  # coordinate descent over the grid: the loss has poor local minima in β
        for j in range(len(levels)):
            for b in grid:
                tried = betas.clone()
                tried[j] = b
                if (value := loss(tried)) < best - 1e-9:  # (a tie keeps the larger strength)
                    best, betas = value, tried
    without = -(shares.gather(1, target.unsqueeze(1)) / shares.sum(1, keepdim=True)).log().mean().item()
    gain = without - best
    record = {"names": list(names), "strengths": [round(v, 4) for v in betas.tolist()], "cv_gain": round(gain, 4),
              "kept": gain >= CLASS_MIN_GAIN}
    if not record["kept"]:
        return None, record
    context_keys, backoffs, gram_keys, alphas = [], [], [], []
    for (contexts, total), b in zip(levels, betas):
        seen = total.sum(1) + b
        row, c = (total > 0).nonzero(as_tuple=True)
        context_keys.append(contexts)
        backoffs.append(b / seen)
        gram_keys.append(contexts[row] * (C + 1) + c + 1)
        alphas.append(total[row, c] / seen[row])
    return BackoffTable.from_parts(torch.cat(context_keys), torch.cat(backoffs).float(), torch.cat(gram_keys),
                                   torch.cat(alphas).float(), C + 1), record


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
    fold_of_word, k = _folds(len(x), seed)
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


# --- the neural model: fine-tuning a pretrained network ------------------------------------------------
def resize_vocab(model: CharModel, old: Vocab, new: Vocab) -> CharModel:
    """A copy of a recurrent network over vocabulary `new`: embedding and output rows of the shared
    characters are kept, new characters start from the mean row (and the lowest output bias)."""
    if model.model_type not in NEURAL_TYPES:
        raise ConfigError(f"fine-tuning works for {', '.join(NEURAL_TYPES)} networks, not {model.model_type}",
                          field="prior")
    resized = type(model)(new.size, model.config).to(model.device)
    index = torch.tensor([BOUNDARY] + [old.stoi.get(c, -1) for c in new.chars], device=model.device)
    known = index >= 0
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name in ("wte.weight", "lm_head.weight", "lm_head.bias"):
        rows = state[name]
        fill = rows.min(0).values if name == "lm_head.bias" else rows.mean(0)
        state[name] = torch.where(known.view(-1, *[1] * (rows.dim() - 1)), rows[index.clamp(min=0)], fill)
    resized.load_state_dict(state)
    return resized


def _fine_tune(model: CharModel, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int,
               held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
               callback: Callable[[int, float], None] | None = None) -> list[tuple[int, float]]:
    """AdamW on batches of the list for `steps` steps; with `held_out`, its NLL every
    NEURAL_EVAL_EVERY steps (and at step 0), stopping after NEURAL_PATIENCE evaluations without a
    better one. Returns [(step, held-out NLL)]."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=NEURAL_LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    x, y = x.to(device), y.to(device)
    curve: list[tuple[int, float]] = []
    best, since_best = math.inf, 0
    for step in range(steps + 1):
        if held_out is not None and step % NEURAL_EVAL_EVERY == 0:
            loss = mean_nll(model, *held_out)
            curve.append((step, loss))
            best, since_best = (loss, 0) if loss < best else (best, since_best + 1)
            if since_best >= NEURAL_PATIENCE:
                break
        if step == steps:
            break
        model.train()
        rows = torch.randint(len(x), (min(NEURAL_BATCH, len(x)),), generator=generator).to(device)
        T = int((y[rows] >= 0).sum(1).max())
        loss = batch_loss(model(x[rows, :T]), y[rows, :T])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if callback:
            callback(step + 1, loss.item())
    model.eval()
    return curve


@with_autograd
def adapt_neural(words: Sequence[str], vocab: Vocab, pretrained: CharModel, pretrained_vocab: Vocab, *,
                 seed: int = 0, max_steps: int | None = None,
                 callback: Callable[[int, float], None] | None = None) -> tuple[CharModel, dict[str, Any]]:
    """The pretrained network fine-tuned on `words`, for a number of steps chosen by cross-validation
    (at most `max_steps`, default NEURAL_MAX_STEPS)."""
    start = time.perf_counter()
    max_steps = NEURAL_MAX_STEPS if max_steps is None else max_steps
    base = resize_vocab(pretrained, pretrained_vocab, vocab).eval()
    x, y = encode_words(list(words), vocab)
    k = min(NEURAL_FOLDS, len(words))
    fold = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)) % k
    curves = []
    for f in range(k):
        model = copy.deepcopy(base)
        curves.append(dict(_fine_tune(model, x[fold != f], y[fold != f], max_steps, seed + f,
                                      held_out=(x[fold == f], y[fold == f]))))
    # the mean held-out loss at each evaluated step; a fold that stopped early keeps its last loss
    steps = sorted(set().union(*curves))
    mean = [sum(c.get(s, c[max(c)]) for c in curves) / k for s in steps]
    best = steps[min(range(len(steps)), key=mean.__getitem__)]
    model = copy.deepcopy(base)
    if best:
        _fine_tune(model, x, y, best, seed, callback=callback)
    record = {"method": "fine-tune", "folds": k, "steps": best, "learning_rate": NEURAL_LR, "batch_size": NEURAL_BATCH,
              "cv_curve": [[s, round(v, 4)] for s, v in zip(steps, mean)], "cv_nll": round(min(mean), 4),
              "cv_nll_background": round(mean[0], 4), "seconds": round(time.perf_counter() - start, 3)}
    log.info(f"fine-tuned the {pretrained.model_type} prior on {len(words)} names for {best} steps (chosen by "
             f"{k}-fold cross-validation: held-out NLL {record['cv_nll']:.4f}, the prior alone {mean[0]:.4f})")
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
    table = _table(levels, discounts, strengths, shares, base)
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


class OwnLetters(DelegatingModel):
    """A model that draws only some characters (an adapted model's list's own, `alphabet`) and the end:
    the other tokens' logits are -inf, so the rest share their probability in proportion. Sampling
    only: the background still shapes which of the list's letters follow which, and scoring keeps the
    open vocabulary (a name with other letters is scored by the model itself). A Markov chain stays
    one, so exact constraints work as before."""

    model_type: ClassVar[str] = "own-letters"
    config_class: ClassVar[type] = dict

    def __init__(self, model: CharModel, allowed: torch.Tensor):
        super().__init__(model.vocab_size, {})
        self.model = model
        self.neural = model.neural
        self.training = model.training
        self.register_buffer("blocked", ~allowed.to(torch.bool))

    @classmethod
    def of(cls, model: CharModel, vocab: Vocab, alphabet: str) -> OwnLetters:
        """`model` (vocabulary `vocab`) drawing only the characters of `alphabet`."""
        allowed = torch.zeros(vocab.size, dtype=torch.bool, device=model.device)
        allowed[BOUNDARY] = True
        allowed[[vocab.stoi[c] for c in set(alphabet) if c in vocab.stoi]] = True
        return cls(model, allowed)

    def _only(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits.float().masked_fill(self.blocked, -math.inf), -1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self._only(self.model(idx))

    def init_state(self, batch_size: int) -> Any:
        return self.model.init_state(batch_size)

    def step(self, state: Any, token: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, state = self.model.step(state, token)
        return self._only(logits), state

    def select_state(self, state: Any, rows: torch.Tensor) -> Any:
        return self.model.select_state(state, rows)

    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        chain = self.model.markov_chain()
        if chain is None:
            return None
        log_probs, next_state, start = chain
        return self._only(log_probs.to(self.blocked.device)), next_state, start
