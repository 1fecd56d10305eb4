"""A conditional count model's rows at a few names' positions, read off its stored counts: classification
without building a table per node (namesmith.models.conditional_counts).

Classifying a name needs every node's distributions at the name's own positions only. Building the 45
components of `us` for it took 3 s of CPU on every `namesmith classify`. So each node also keeps the rows
of its lowest orders (contexts of up to 2 tokens, while they fit in LOW_ORDER_CELLS: namesmith.models.
conditional_fit): those rows need the continuation counts of every n-gram. The rows of a name's longer
contexts come from the few stored n-grams that end in those contexts (`CountsIndex.rows`, every node at
once). They are computed as the component's table computes them, so classification gives the same
posteriors whichever path it takes. A model saved without these rows classifies from its tables.
"""

from __future__ import annotations

import torch

from namesmith.data.ngram_keys import suffix_keys
from namesmith.models.base import CharModel
from namesmith.models.conditional_fit import is_ancestor
from namesmith.models.conditioned import live_context_windows
from namesmith.models.nll import target_log_probs
from namesmith.models.weighted_kn import WeightedCounts, order_counts, rows_after

CLASSIFY_CHUNK_BYTES = 64 << 20  # per-position rows of every component held at once when classifying
# Classifying a few names reads their rows off the counts (`CountsIndex.rows`) rather than building every
# component's table (us: 45 tables, 3 s); past this many names the tables pay for themselves.
FEW_NAMES = 64


class CountsIndex:
    """The stored n-grams of a fitted conditional count model, indexed to read rows off them: sorted by their
    tokens before the last, read nearest first as digits (`nearest`), with their positions in the stored order
    (`positions`), so that the n-grams whose last tokens follow a context are one range; the combination of
    each stored n-gram (`combo_of`); and which full combinations each node's component counts (`member`)."""

    def __init__(self, model: CharModel):
        B, N = model.base, model.order
        unknown = model.condition.unknown()
        self.member = torch.tensor([[is_ancestor(tuple(node), tuple(combo), unknown)
                                     for combo in model.combo_codes.tolist()] for node in model.node_codes.tolist()],
                                   dtype=torch.bool).view(len(model.node_codes), len(model.combo_codes))  # (S, C)
        nearest = torch.zeros_like(model.gram_keys)
        for i in range(1, N):  # the i-th token before the last becomes the i-th most significant digit
            nearest = nearest * B + model.gram_keys // B**i % B
        self.nearest, self.positions = torch.sort(nearest)
        self.combo_of = torch.repeat_interleave(torch.arange(len(model.combo_codes)),
                                                model.combo_offsets[1:] - model.combo_offsets[:-1])  # (M,)

    def rows(self, model: CharModel, nodes: list[int], x: torch.Tensor) -> dict[int, torch.Tensor]:
        """{node: (B, T, V) its component's log-probabilities (float32) at every position of `x`}, read off the
        counts: each node's saved rows of the two lowest orders, then, order by order, the Kneser-Ney rows of
        the positions' own contexts from the few n-grams that end in them (`rows_after`), every node at once
        (a key carries its node above its digits). Equal to the rows of the component's table
        (`model.component(node)(x)`, the same operations in the same order), without building it."""
        B, V, K, N = model.base, model.vocab_size, model.context_size, model.order
        windows = live_context_windows(x, K).reshape(-1, K)  # (B·T, K), oldest token first
        distinct, inverse = torch.unique(((windows + 1) * B ** torch.arange(K - 1, -1, -1)).sum(-1),
                                         return_inverse=True)
        first = torch.zeros(len(distinct), dtype=torch.long).scatter_(0, inverse, torch.arange(len(windows)))
        windows = windows[first]  # (P, K): each distinct context once
        suffixes = suffix_keys(windows, B)  # (P, K+1): keys of the last 0..K tokens
        node_ids = torch.tensor(nodes)
        levels = 2 if model.node_low_probs.size(1) == B else 3  # the saved rows: contexts of fewer tokens than this
        rows = model.node_low_probs[node_ids[:, None], suffixes[None, :, min(K, levels - 1)]]  # (S', P, V) float64
        member = self.member[node_ids]  # (S', C) the combinations each node counts
        nearest = torch.zeros(len(windows), dtype=torch.long)  # the last k-1 tokens, latest most significant
        for k in range(2, N + 1):
            nearest = nearest * B + windows[:, K - k + 1] + 1
            if k <= levels:
                continue
            # every n-gram whose last k tokens follow one of these contexts: all that order k's counts of them
            # need; `nearest` holds the n-grams by their tokens before the last, nearest first, so they are ranges
            low = torch.unique(nearest) * B ** (N - k)
            starts, ends = (torch.searchsorted(self.nearest, bound) for bound in (low, low + B ** (N - k)))
            lengths = ends - starts
            at = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths) + torch.arange(
                int(lengths.sum()))
            chosen = torch.sort(self.positions[at]).values  # in stored order: sums add up as the tables' do
            pairs = member[:, self.combo_of[chosen]].nonzero()  # (node, n-gram), node by node
            node_of, gram = pairs[:, 0], chosen[pairs[:, 1]]
            merged = WeightedCounts.of(N, V, node_of * B**N + model.gram_keys[gram], model.gram_counts[gram], 0)
            keys, counts = order_counts(merged, k)
            discounts = model.node_discounts[node_ids, k - 1].double()[keys // B**k]  # (M, 3) each k-gram's node's
            contexts = torch.arange(len(nodes)).unsqueeze(1) * B ** (k - 1) + suffixes[:, k - 1]  # (S', P)
            rows = rows_after(keys, counts, discounts, contexts.reshape(-1), rows.reshape(-1, V), V).view(
                len(nodes), -1, V)
        logp = rows.log().float()[:, inverse].view(len(nodes), *x.shape, V)
        return {a: logp[i] for i, a in enumerate(nodes)}


def combination_log_likelihoods(model: CharModel, x: torch.Tensor, y: torch.Tensor,
                                combinations: list[tuple[int, ...]]) -> torch.Tensor:
    """`ConditionalCounts.combination_log_likelihoods` of `model`: each node's rows read off the counts
    (`CountsIndex.rows`) for a few names whose nodes are not all kept as tables, else off the kept tables."""
    parts = [model.mixture_parts(codes) for codes in combinations]
    nodes = sorted({a for p in parts for a, _ in p})
    T = max(int((y >= 0).sum(1).max()) if len(y) else 1, 1)
    x, y = x[:, :T].to(model.device), y[:, :T].to(model.device)
    rows = max(1, CLASSIFY_CHUNK_BYTES // (4 * len(nodes) * T * model.vocab_size))  # bounds the (B, T, V) rows held
    from_counts = len(x) <= FEW_NAMES and len(model.node_low_probs) == len(model.node_codes) and \
        len(model.node_codes) * model.base**model.order < 1 << 62 and not all(a in model.kept for a in nodes)
    out = []
    for i in range(0, len(x), rows):
        xb, yb = x[i : i + rows], y[i : i + rows]
        with torch.no_grad():
            logp = model.counts_rows(nodes, xb) if from_counts else \
                {a: model.kept_component(a)(xb).float() for a in nodes}
            logp = {a: torch.log_softmax(lp, -1) for a, lp in logp.items()}  # (B, T, V)
        columns = []
        for p in parts:
            mixed = logp[p[0][0]] if len(p) == 1 and p[0][1] == 1.0 else torch.log_softmax(
                sum(w * logp[a] for a, w in p), -1)
            columns.append(target_log_probs(mixed, yb).double().sum(1))
        out.append(torch.stack(columns, 1))
    return torch.cat(out) if out else torch.zeros(0, len(combinations), dtype=torch.float64)
