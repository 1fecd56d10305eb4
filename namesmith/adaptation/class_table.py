"""The class table of an adapted n-gram: how long the list's names are, and which scripts follow which.

Step 3 of adapting an n-gram (namesmith.adaptation.adapt):

*How long are the list's names, and which scripts follow which?* The n-gram knows a context
only through its characters: after two Chinese characters it never saw together it backs off to
what follows the second one anywhere, and forgets that every name of the list ends there. A
**class table** on top knows the classes of the context's tokens (the end, or the script of a
character, with capitals and marks apart where most of the list's names have them:
`token_classes`), so how far into the name it is (up to order-1 characters), which scripts and
spaces follow which and where vowel signs go; it replaces the model's share of each class after
a class context by a hierarchical Dirichlet smoother of the list's class counts over that share
(`fit_class_table`; its strengths chosen by cross-validation against the adapted model's
held-out rows, and the table kept only if it helps there).
"""

from __future__ import annotations

import collections
import logging
import math
import unicodedata
from collections.abc import Sequence
from typing import Any

import torch

from namesmith.adaptation.list_table import STRENGTH_RANGE, backoff_table, level_weights, list_levels
from namesmith.core.vocab import Vocab, script_of
from namesmith.data.ngram_keys import suffix_keys
from namesmith.models.backoff_table import ROWS_CHUNK, BackoffTable
from namesmith.models.sparse_ngram import SparseNGram

log = logging.getLogger("namesmith")

CLASS_MIN_GAIN = 1e-3  # held-out nats per token the class table must gain to be kept (fit_class_table)
CLASS_SPLIT_SHARE = 0.5  # of a list's names with capitals (marks) for them to be a class of their own
CLASS_GRID, CLASS_SWEEPS = 25, 3  # its strengths: a log grid over STRENGTH_RANGE, sweeps of coordinate descent


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
        tables[f] = backoff_table(levels, *level_weights(theta, n), base)
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
