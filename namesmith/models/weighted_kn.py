"""Kneser-Ney on weighted counts: the n-gram of namesmith.models.ngram, fitted from fractional counts.

`NGram` counts every n-gram occurrence once. The rows of a labelled table weigh what the weighting
says (namesmith.data.tables.weights: a name's share of its births in one label combination, 1 + ln of
its count, its count), so an n-gram's count is the sum of the weights of the rows it occurs in: a
real number. This module fits interpolated modified Kneser-Ney (Chen & Goodman 1998) from such
counts, and gives exactly `NGram`'s tables for whole counts:

- Discount classes: D1 applies to counts in (0, 1], D2 to (1, 2], D3+ above 2 (for whole counts:
  1, 2 and 3+). A count keeps max(c - D, 0), and a context's back-off weight is exactly the mass
  taken away, Σ min(c, D(c)) / c(h), so a fraction of a name smaller than its discount is all
  backed off.
- Continuation counts: a lower-order n-gram g counts each distinct token x seen before it by the
  weight of x g, capped at 1 (for whole counts: the number of distinct left contexts, as KN
  counts them). A left context seen only in a fraction of a name counts that fraction.
- The closed-form discounts use the counts of counts of the counts rounded up; "tuned"
  discounts maximise the likelihood of held-out counts (`tune_discounts`), as `NGram` does.

Keys are `NGram`'s: an n-gram's tokens + 1 as the digits of an int64 in base vocab_size + 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from namesmith.data.ngram_keys import distinct_contexts, find_sorted, sum_by
from namesmith.models.backoff_table import BackoffTable
from namesmith.models.kneser_ney import (
    DISCOUNT_LIMITS,
    FALLBACK_DISCOUNTS,
    discount_class,
    interpolation,
    modified_kn_discounts,
)
from namesmith.models.ngram import NGram


@dataclass(frozen=True)
class WeightedCounts:
    """The order-N n-grams of some weighted words: sorted distinct keys and their summed weights."""

    order: int
    vocab_size: int
    keys: torch.Tensor  # (M,) int64, sorted, distinct
    counts: torch.Tensor  # (M,) float64 > 0
    n_words: int  # rows counted (whatever their weight)

    @classmethod
    def empty(cls, order: int, vocab_size: int) -> WeightedCounts:
        return cls(order, vocab_size, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64), 0)

    @classmethod
    def of(cls, order: int, vocab_size: int, keys: torch.Tensor, weights: torch.Tensor, n_words: int
           ) -> WeightedCounts:
        """Counts of n-gram occurrences `keys` (M,), each weighing `weights` (M,)."""
        unique, inverse = torch.unique(keys, return_inverse=True)
        counts = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, weights.double())
        kept = counts > 0
        return cls(order, vocab_size, unique[kept], counts[kept], n_words)

    def merge(self, *others: WeightedCounts) -> WeightedCounts:
        """The counts of these disjoint sets of words together."""
        parts = [self, *others]
        return WeightedCounts.of(self.order, self.vocab_size, torch.cat([p.keys for p in parts]),
                                 torch.cat([p.counts for p in parts]), sum(p.n_words for p in parts))

    def without(self, subset: WeightedCounts) -> WeightedCounts:
        """These counts less those of a subset of the same words (what is left is at least 0)."""
        if not len(subset.keys):
            return self
        pos, found = find_sorted(self.keys, subset.keys)
        assert bool(found.all()), "subset: n-grams these counts do not hold"
        counts = self.counts.clone()
        counts[pos] -= subset.counts
        kept = counts > 1e-9 * self.counts.clamp(min=1)  # what rounding leaves of a removed n-gram is 0
        return WeightedCounts(self.order, self.vocab_size, self.keys[kept], counts[kept],
                              self.n_words - subset.n_words)


def orders(counts: WeightedCounts) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per order k = 1..N (index k-1): the sorted k-gram keys seen and their (continuation) counts."""
    N, B = counts.order, counts.vocab_size + 1
    keys_by_order: list[torch.Tensor] = [torch.empty(0)] * N
    counts_by_order: list[torch.Tensor] = [torch.empty(0)] * N
    keys, values = counts.keys, counts.counts
    keys_by_order[N - 1], counts_by_order[N - 1] = keys, values
    for k in range(N - 1, 0, -1):
        # each distinct (k+1)-gram x g adds min(1, its count) to g: the padding sees to it that every
        # k-gram seen ends some (k+1)-gram seen
        lower, inverse = torch.unique(keys % B**k, return_inverse=True)
        values = torch.zeros(len(lower), dtype=torch.float64).index_add_(0, inverse, values.clamp(max=1.0))
        keys = lower
        keys_by_order[k - 1], counts_by_order[k - 1] = keys, values
    return keys_by_order, counts_by_order


def estimated_discounts(counts_by_order: list[torch.Tensor], method: str | float) -> torch.Tensor:
    """(N, 3) D1, D2, D3+ per order from the counts of counts (counts rounded up), or the fixed discount.

    As `NGram`'s, except that an order whose formulas clamp a discount to 0 takes the fallback: a
    discount of 0 leaves its contexts no mass for what they have not seen (probability 0).
    """
    discounts = torch.zeros(len(counts_by_order), 3, dtype=torch.float64)
    for k, counts in enumerate(counts_by_order):
        rounded = torch.ceil(counts)
        n1, n2, n3, n4 = (int((rounded == i).sum()) for i in (1, 2, 3, 4))
        if method in ("modified-kn", "tuned"):
            discounts[k] = torch.tensor(modified_kn_discounts(n1, n2, n3, n4))
            if bool((discounts[k] <= 0).any()):
                discounts[k] = torch.tensor(FALLBACK_DISCOUNTS)
        elif method == "kn":
            discounts[k] = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else FALLBACK_DISCOUNTS[0]
        else:
            discounts[k] = float(method)
    return discounts


def backoff_orders(counts: WeightedCounts, discounts: torch.Tensor
                   ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """These counts' interpolated Kneser-Ney as a back-off table: per order k = 1..N, the sorted keys of the
    contexts seen (k-1 tokens), each one's γ, and the sorted k-gram keys seen with their α, so that
    P_k(c | h) = γ(h) · P_{k-1}(c | h') + α(h c) after a context seen and P_{k-1}(c | h') after any other (h' is h
    without its oldest token): the rows `distributions` and `rows_after` build. `discounts`: (N, 3)."""
    keys_by_order, counts_by_order = orders(counts)
    tables = []
    for k, (keys, values) in enumerate(zip(keys_by_order, counts_by_order), start=1):
        context_keys, _, alpha, backoff_weight, _ = interpolation(keys, values, discounts[k - 1],
                                                                   counts.vocab_size + 1)
        tables.append((context_keys, backoff_weight, keys, alpha))
    return tables


def distributions(keys_by_order: list[torch.Tensor], counts_by_order: list[torch.Tensor], discounts: torch.Tensor,
                  vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Context keys (R,) and next-token log-probabilities (R, V) float32 of every context seen, all orders."""
    V, B = vocab_size, vocab_size + 1
    all_keys, all_logprobs = [], []
    lower_keys = torch.zeros(1, dtype=torch.long)  # order 0: the empty context, uniform
    lower_probs = torch.full((1, V), 1.0 / V, dtype=torch.float64)
    for k, (keys, counts) in enumerate(zip(keys_by_order, counts_by_order), start=1):
        context_keys, context_of, alpha, backoff_weight, _ = interpolation(keys, counts, discounts[k - 1], B)
        parent = torch.searchsorted(lower_keys, context_keys % B ** max(k - 2, 0))
        probs = backoff_weight[:, None] * lower_probs[parent]  # (C, V)
        probs[context_of, keys % B - 1] += alpha
        lower_keys, lower_probs = context_keys, probs
        all_keys.append(context_keys)
        all_logprobs.append(probs.log().float())
    return torch.cat(all_keys), torch.cat(all_logprobs)


def order_counts(counts: WeightedCounts, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sorted k-gram keys seen and their (continuation) counts: order k of `orders`, reduced alike. Keys
    may carry a model's number above their digits (several models' counts at once: each keeps its own)."""
    N, B = counts.order, counts.vocab_size + 1
    keys, values = counts.keys, counts.counts
    for j in range(N - 1, k - 1, -1):
        lower, inverse = torch.unique(keys // B ** (j + 1) * B**j + keys % B**j, return_inverse=True)
        values = torch.zeros(len(lower), dtype=torch.float64).index_add_(0, inverse, values.clamp(max=1.0))
        keys = lower
    return keys, values


def rows_after(keys: torch.Tensor, counts: torch.Tensor, discounts: torch.Tensor, contexts: torch.Tensor,
               lower: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(P, V) P_k(· | context) (float64) for the keys (P,) of contexts of k-1 tokens, from the order-k counts
    (`order_counts`) of every k-gram whose context is one of them (others may be there too), their discounts
    ((3,), or (M, 3): one row per k-gram) and the rows (P, V) of the contexts' parents (their last k-2
    tokens). A context the counts never saw keeps its parent's row, as the n-gram's longest match does. The
    rows `distributions` builds, by the same operations, so they are equal: what scoring a few names needs
    without the whole (contexts, V) table. Keys may carry a model's number above their digits (several
    models' rows at once), as long as the contexts carry it too."""
    if not len(keys):
        return lower
    context_keys, context_of, alpha, backoff_weight, _ = interpolation(keys, counts, discounts, vocab_size + 1)
    pos, found = find_sorted(context_keys, contexts)
    used, inverse = torch.unique(pos[found], return_inverse=True)  # the contexts asked for, each once
    seen = torch.zeros(len(context_keys), dtype=torch.bool)
    seen[used] = True
    at = seen[context_of]  # the k-gram entries of those contexts
    alphas = torch.zeros(len(used), vocab_size, dtype=torch.float64)
    alphas[torch.searchsorted(used, context_of[at]), keys[at] % (vocab_size + 1) - 1] = alpha[at]
    rows = lower.clone()
    rows[found] = backoff_weight[pos[found], None] * lower[found] + alphas[inverse]
    return rows


def low_order_rows(counts: WeightedCounts, discounts: torch.Tensor, levels: int) -> torch.Tensor:
    """(B^(levels-1), V) float64, B = V + 1: the row of each context of fewer than `levels` tokens, at its key
    (row 0 the empty context's, row t + 1 after token t, ...; a context never seen, or a key that is no
    context, holds its parent's row), as `distributions` builds them. The lowest orders need the continuation
    counts of every n-gram; a model that keeps their rows has only the few n-grams of some contexts to
    reduce for the others (`rows_after`)."""
    V, B = counts.vocab_size, counts.vocab_size + 1
    keys_by_order, counts_by_order = orders(counts)
    rows = torch.full((1, V), 1.0 / V, dtype=torch.float64)  # order 0: uniform
    for k in range(1, levels + 1):
        contexts = torch.arange(B ** (k - 1))  # every key of fewer than k tokens
        lower = rows[contexts % B ** max(k - 2, 0)]  # the parent: without the oldest token
        rows = lower if k > counts.order else rows_after(keys_by_order[k - 1], counts_by_order[k - 1],
                                                          discounts[k - 1], contexts, lower, V)
    return rows


TABLE_CHUNK = 1 << 21  # n-grams of one order turned into table entries at a time (bounds the transient memory)


def sparse_table(counts: WeightedCounts | None, discounts: torch.Tensor,
                 by_order: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None, *,
                 vocab_size: int | None = None, progress: Callable[[int], None] | None = None) -> BackoffTable:
    """The model `fit_tables` builds, in sparse form (namesmith.models.sparse_ngram): per context its γ and
    the α of each token seen after it, (contexts + n-grams) numbers instead of contexts × V. What a
    vocabulary of many scripts needs: 150,000 contexts × 1,000 characters would be 600 MB a table.

    `by_order` (keys and counts per order, as `orders` gives them; integer counts too) is consumed: each
    order's tensors are dropped from its lists once written. The table's arrays are allocated once, at
    their final size, and filled a chunk of whole contexts at a time, so beside the table and the counts
    only a chunk's float64 work is held (a 50 MB list of random words: 29M n-grams, 12M contexts).
    `progress(n)` is told of each n n-grams written."""
    keys_by_order, counts_by_order = by_order or orders(counts)
    B = (counts.vocab_size if counts is not None else vocab_size) + 1
    n_contexts = [distinct_contexts(keys, B) for keys in keys_by_order]
    R, M = sum(n_contexts), sum(len(keys) for keys in keys_by_order)
    context_keys, backoff = torch.empty(R, dtype=torch.long), torch.empty(R, dtype=torch.float32)
    offsets, next_tokens, alpha = torch.empty(R + 1, dtype=torch.long), torch.empty(M, dtype=torch.int32), \
        torch.empty(M, dtype=torch.float32)
    row = entry = 0
    # keys of j tokens lie in [B^(j-1), B^j): written order by order, contexts and n-grams stay sorted
    for k in range(len(keys_by_order)):
        keys, order_counts = keys_by_order[k], counts_by_order[k]
        for start, end in _context_chunks(keys, B):
            chunk_keys = keys[start:end]
            contexts, _, chunk_alpha, chunk_backoff, starts = interpolation(
                chunk_keys, order_counts[start:end].double(), discounts[k], B)
            rows = slice(row, row + len(contexts))
            context_keys[rows], backoff[rows], offsets[rows] = contexts, chunk_backoff, starts + entry + start
            next_tokens[entry + start : entry + end] = chunk_keys % B - 1
            alpha[entry + start : entry + end] = chunk_alpha
            row += len(contexts)
            if progress:
                progress(end - start)
        entry += len(keys)
        keys_by_order[k] = counts_by_order[k] = torch.empty(0)  # this order is in the table: free its counts
    offsets[R] = M
    return BackoffTable().set(context_keys, backoff, None, offsets, next_tokens, alpha)


def _context_chunks(sorted_keys: torch.Tensor, base: int) -> list[tuple[int, int]]:
    """[start, end) ranges of about TABLE_CHUNK sorted n-gram keys, each holding whole contexts: the keys of
    context h are the contiguous run h·base + 1 .. h·base + V."""
    bounds, start, M = [], 0, len(sorted_keys)
    while start < M:
        end = min(start + TABLE_CHUNK, M)
        if end < M:  # move the end to the first key of the next context
            end = int(torch.searchsorted(sorted_keys, (sorted_keys[end - 1] // base + 1) * base))
        bounds.append((start, end))
        start = end
    return bounds


def context_count(counts: WeightedCounts, keys_by_order: list[torch.Tensor] | None = None) -> int:
    """How many contexts (of every order) a model of these counts stores: the rows of its dense table."""
    B = counts.vocab_size + 1
    return sum(len(torch.unique(keys // B)) for keys in (keys_by_order or orders(counts)[0]))


def fit_tables(model: NGram, counts: WeightedCounts, discounts: torch.Tensor) -> NGram:
    """`model` (an `NGram` of the counts' order and vocabulary) fitted from weighted counts and discounts."""
    assert (model.config.order, model.vocab_size) == (counts.order, counts.vocab_size)
    keys_by_order, counts_by_order = orders(counts)
    keys, logprobs = distributions(keys_by_order, counts_by_order, discounts, counts.vocab_size)
    model.context_keys, model.next_token_logprobs = keys.to(model.device), logprobs.to(model.device)
    model.discounts = discounts.to(model.device, torch.float32)
    return model


def tune_discounts(rest: WeightedCounts, held: WeightedCounts,
                   minimize: Callable[[Callable, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """(N, 3) discounts maximising the likelihood of the held-out counts under a model of the rest.

    Started from the formulas; D = limit · sigmoid(θ) keeps each discount in its range; `minimize`
    is a smooth minimiser of (loss, grad) functions of θ. The formulas are kept if nothing is better.
    """
    keys_by_order, counts_by_order = orders(rest)
    start = estimated_discounts(counts_by_order, "modified-kn")
    B, V = rest.vocab_size + 1, rest.vocab_size
    features = []
    for k, (keys, counts) in enumerate(zip(keys_by_order, counts_by_order), start=1):
        context_keys, context_of = torch.unique(keys // B, return_inverse=True)
        grams = held.keys % B**k  # the k-gram ending at each held-out target
        pos, found = find_sorted(keys, grams)
        context_pos, context_seen = find_sorted(context_keys, grams // B)
        gram_count = torch.where(found, counts[pos], torch.zeros((), dtype=torch.float64))
        # only the contexts the held-out n-grams use matter for their discounted mass
        used = torch.zeros(len(context_keys), dtype=torch.bool)
        used[context_pos[context_seen]] = True
        in_used = used[context_of]
        features.append((gram_count, discount_class(gram_count.clamp(min=1e-12)), context_seen,
                         sum_by(context_of, counts, len(context_keys))[context_pos], context_pos,
                         context_of[in_used], counts[in_used], discount_class(counts[in_used]), len(context_keys)))
    weights = held.counts / held.counts.sum()

    def held_out_nll(discounts: torch.Tensor) -> torch.Tensor:
        prob = torch.full(weights.shape, 1.0 / V, dtype=torch.float64)
        for d, (gram_count, gram_class, seen, total, context_pos, of, counts, classes, n) in zip(discounts, features):
            kept = (gram_count - d[gram_class]).clamp(min=0)
            mass = torch.zeros(n, dtype=torch.float64).index_add(0, of, torch.minimum(counts, d[classes]))
            interpolated = (kept + mass[context_pos] * prob) / total.clamp(min=1e-12)
            prob = torch.where(seen, interpolated, prob)
        return -(weights * prob.log()).sum()

    def loss_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = theta.detach().requires_grad_()
        with torch.enable_grad():
            loss = held_out_nll(DISCOUNT_LIMITS * theta.view(-1, 3).sigmoid())
            (grad,) = torch.autograd.grad(loss, theta)
        return loss.detach(), grad

    theta = minimize(loss_and_grad, torch.logit((start / DISCOUNT_LIMITS).clamp(0.01, 0.99)).flatten())
    tuned = DISCOUNT_LIMITS * theta.view(-1, 3).sigmoid()
    with torch.no_grad():
        return tuned if held_out_nll(tuned) < held_out_nll(start) else start
