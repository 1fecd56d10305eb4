"""The background of a list adapted onto a prior: its vocabulary, its tables, its mixture re-weighed to the list.

The adapted model reads the words of a list over the tables of a background model
(namesmith.adaptation.adapt). This module turns the background into back-off tables over the adapted
vocabulary (`background_model`: a `SparseNGram` of its mixture's components, kept per model) and
re-weighs its mixture to the list (`fit_mixture`).

*Which names does the list resemble?* The catalogue prior is a mixture of Kneser-Ney n-grams:
one of all its names and one per group (US names by sex and era, Israeli names by sector and
decade, each `world` locale: namesmith.adaptation.prior). The mixture weights are re-fitted to the list by
EM (with a small Dirichlet pull towards the all-names model), so a list of Turkish names leans
on the Azerbaijani and Turkish-like groups, a list of US surnames on the boys' names of recent
decades (they are often surnames). A background that is a single model keeps it as it is.

**Vocabulary.** The adapted model reads the list's characters and every background character of
the scripts the list uses (Latin for an elvish list, Cyrillic for a Russian one; script = the first
word of the Unicode name of a letter or mark), plus the background's punctuation and spaces (and its
invisible format characters only if the list has one). Names
with characters the list never had are thus scored by the background's knowledge of them, and
constraints may use them. Other characters — ones no model has seen — get a documented fallback
when scoring and evaluating: namesmith.scoring.open_vocabulary.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import weakref
from collections.abc import Sequence

import torch

from namesmith.core.errors import ConfigError
from namesmith.core.vocab import BOUNDARY, Vocab, script_of
from namesmith.data.ngram_keys import suffix_keys
from namesmith.models.backoff_table import BackoffTable
from namesmith.models.base import CharModel
from namesmith.models.conditional_counts import ConditionalCounts
from namesmith.models.sparse_ngram import SparseNGram

log = logging.getLogger("namesmith")

MIXTURE_PSEUDO_COUNT = 5.0  # tokens of the whole prior in the mixture's Dirichlet prior
EM_STEPS = 300
MIN_COMPONENT_WEIGHT = 1e-3  # lighter mixture components are dropped from an adapted model
BACKGROUNDS_KEPT = 2  # converted backgrounds kept per model (`background_model`)
_BACKGROUNDS_LOCK = threading.Lock()


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


_BACKGROUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(vocabularies, order): SparseNGram}


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
