"""What interpolated modified Kneser-Ney makes of raw n-gram counts (Chen & Goodman 1998): the lower orders'
continuation counts, and the three discounts per order, from the counts-of-counts or tuned on held-out words.

`namesmith.models.ngram.NGram` fits its tables from these; the weighted counts of the conditional models
(`namesmith.models.weighted_kn`) and the sparse tables (`namesmith.models.backoff_table`) share the formulas.

- c_N are raw counts. Lower orders use *continuation* counts, c_k(g) = |{x : x g was seen}|: a
  lower order is consulted when the longer context was not decisive, so what matters there is
  in how many contexts a character follows g, not how often. The boundary padding is treated
  as ordinary tokens, so a lower-order n-gram at the very start of names has continuation count
  1 (only the boundary precedes it). On names.txt this is slightly better (validation NLL 1.9740
  against 1.9746) than KenLM's convention: raw counts for n-grams that start at the boundary, and
  contexts with several boundaries merged into one.
- Three discounts per order from the counts-of-counts n1..n4 of that order's counts:
  Y = n1/(n1+2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3,
  each clamped to its valid range 0 ≤ D_i ≤ i. On tiny data some n_i are 0 and the formulas
  break down (n2 = 0 gives D1 = 1: every n-gram seen once is discounted away), so an order with
  a zero among n1..n4 uses KenLM's fallback discounts D = (0.5, 1, 1.5) instead.

`discount` chooses how the D's are set:
- "tuned" (the default): start from the formulas, then maximise (L-BFGS) the likelihood of every
  10th training word under a model counted on the other nine tenths (Chen & Goodman also report
  discounts optimised on held-out data); the tuned D's are then used with the counts of all
  training words. "Every 10th" is by position in the training list: words 0, 10, 20, ... of the
  shuffled split in memory, of the training words in file order when a file is streamed; above a
  million training words the step grows so that 100,000 words are held out (`held_out_every`),
  which is plenty to set 3 numbers per order and keeps tuning seconds long on any size. With
  fewer than 1,000 training words there is too little to tune on, and the formulas are used. On
  names.txt (order 6) it lowers validation NLL from 1.9740 to 1.9704 for a tenth of a second more
  fitting.
- "modified-kn": the formulas above.
- "kn": one discount per order, D = Y.
- a number 0 ≤ D ≤ 1 for every count: absolute discounting with Kneser-Ney lower orders. D = 0 is
  maximum likelihood, which for order 2 is the `bigram-counts` table with smoothing 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from namesmith.core.progress import Phase
from namesmith.data.ngram_keys import NGramCounts, find_sorted, sum_by

DISCOUNT_METHODS = ("tuned", "modified-kn", "kn")
MIN_TUNING_WORDS = 1000  # "tuned" with fewer training words uses the formulas (too little to tune on)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's discount_fallback, when some n_i is 0
DISCOUNT_LIMITS = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # 0 ≤ D1 ≤ 1, D2 ≤ 2, D3+ ≤ 3
SUFFIX_CHUNK = 1 << 22  # keys reduced to their suffixes at a time (bounds the int64 temporaries)
UNIQUE_PIECE = 1 << 22  # keys made unique at a time, between progress lines (`_unique_counts`)


def _suffixes(keys: torch.Tensor, place: int) -> torch.Tensor:
    """`keys % place`: the suffixes of fewer tokens, as int32 where they fit (half the memory to sort a
    long list's 18M keys), computed a chunk at a time."""
    out = torch.empty(len(keys), dtype=torch.int32 if place <= 2**31 else torch.long)
    for start in range(0, len(keys), SUFFIX_CHUNK):
        out[start : start + SUFFIX_CHUNK] = keys[start : start + SUFFIX_CHUNK] % place
    return out


def _unique_counts(values: torch.Tensor, progress: Callable[[float], None] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.unique(values, return_counts=True)`, a range of values of about UNIQUE_PIECE values at a time (ranges
    in order, so the result is sorted as one), `progress(share)` after each: one order of a long list's n-grams
    (28M) is seconds of sorting, 14 s without a progress line on a busy machine."""
    pieces = -(-len(values) // UNIQUE_PIECE)
    if pieces <= 1:
        unique = torch.unique(values, return_counts=True)
        if progress:
            progress(1)
        return unique
    sample = values[:: max(1, len(values) // (64 * pieces))].sort().values  # edges at its quantiles
    edges = torch.unique(sample[torch.linspace(0, len(sample) - 1, pieces + 1).long()[1:-1]]).tolist()
    keys, counts = [], []
    for lo, hi in zip([None, *edges], [*edges, None]):
        inside = (values >= lo) if hi is None else (values < hi) if lo is None else (values >= lo) & (values < hi)
        piece_keys, piece_counts = torch.unique(values[inside], return_counts=True)
        keys.append(piece_keys)
        counts.append(piece_counts)
        del inside
        if progress:
            progress(1 / (len(edges) + 1))
    return torch.cat(keys), torch.cat(counts)


def continuation_counts(counts: NGramCounts, progress: Callable[[float], None] | None = None
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per order k = 1..N (index k-1): the sorted k-gram keys seen and their counts (`progress` told of each
    order done, a share at a time: a long list's take seconds each).

    The top order keeps raw counts; lower orders get continuation counts, the number of
    distinct tokens seen before the k-gram (= distinct (k+1)-grams that end with it).
    """
    N, B = counts.order, counts.vocab_size + 1
    keys_by_order: list[torch.Tensor] = [torch.empty(0)] * N
    counts_by_order: list[torch.Tensor] = [torch.empty(0)] * N
    keys = counts.keys
    keys_by_order[N - 1], counts_by_order[N - 1] = counts.keys, counts.counts
    for k in range(N - 1, 0, -1):
        # every k-gram seen ends some (k+1)-gram seen (the padding sees to that): dropping the
        # first token of each distinct (k+1)-gram and counting gives the continuation counts
        keys, continuation = _unique_counts(_suffixes(keys, B**k), progress)
        keys_by_order[k - 1], counts_by_order[k - 1] = keys.long(), continuation
    return keys_by_order, counts_by_order


# --- the discounts ----------------------------------------------------------------------------------
def modified_kn_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
    """D1, D2, D3+ of Chen & Goodman from counts-of-counts, with KenLM's fallback for tiny data."""
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    d1, d2, d3 = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
    return min(max(d1, 0.0), 1.0), min(max(d2, 0.0), 2.0), min(max(d3, 0.0), 3.0)


def estimated_discounts(counts_by_order: list[torch.Tensor], method: str | float) -> torch.Tensor:
    """(N, 3) D1, D2, D3+ per order from the counts-of-counts (or the fixed discount `method`)."""
    discounts = torch.zeros(len(counts_by_order), 3, dtype=torch.float64)
    for k, counts in enumerate(counts_by_order):
        n1, n2, n3, n4 = (int((counts == i).sum()) for i in (1, 2, 3, 4))
        if method in ("modified-kn", "tuned"):
            discounts[k] = torch.tensor(modified_kn_discounts(n1, n2, n3, n4))
        elif method == "kn":
            discounts[k] = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else FALLBACK_DISCOUNTS[0]
        else:
            discounts[k] = method
    return discounts


def fitted_discounts(train: NGramCounts, held_out: NGramCounts | None, method: str | float,
                     counts_by_order: list[torch.Tensor] | None = None) -> torch.Tensor:
    """(N, 3) the discounts an n-gram fits with: tuned on `held_out` under a model of the rest of `train`, or the
    formulas' (`counts_by_order`: `train`'s continuation counts, if they were made already)."""
    if method == "tuned" and held_out is not None and train.n_words >= MIN_TUNING_WORDS:
        return tuned_discounts(train, held_out)
    return estimated_discounts(counts_by_order if counts_by_order is not None else continuation_counts(train)[1],
                               method)


# --- the interpolated weights ----------------------------------------------------------------------
def discount_class(counts: torch.Tensor) -> torch.Tensor:
    """0, 1 or 2: which of D1, D2, D3+ applies to each count (> 0)."""
    return (torch.ceil(counts) - 1).clamp(0, 2).long()


def interpolation(keys: torch.Tensor, counts: torch.Tensor, discounts: torch.Tensor, base: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One order's k-gram `keys` and counts, whole or weighted, as interpolated Kneser-Ney (the formulas of
    the module docstring; every model of counts builds its weights here): the sorted context keys (C,), each
    k-gram's context (M,) and α (its discounted count over its context's total, (M,)), each context's γ (C,)
    and, where the keys are sorted (a context's k-grams one run), the index of its first k-gram (C,).
    `discounts`: D1, D2, D3+ (3,), or a row of them per k-gram (M, 3)."""
    context_keys, context_of, run = torch.unique(keys // base, return_inverse=True, return_counts=True)
    classes = discount_class(counts)
    discounts = discounts.double()
    discount = discounts[classes] if discounts.dim() == 1 else discounts.gather(1, classes.unsqueeze(1)).squeeze(1)
    kept = (counts - discount).clamp(min=0)
    context_total = sum_by(context_of, counts, len(context_keys))
    context_kept = sum_by(context_of, kept, len(context_keys))
    backoff_weight = (context_total - context_kept) / context_total  # the mass discounted
    return context_keys, context_of, kept / context_total[context_of], backoff_weight, run.cumsum(0) - run


# --- tuning the discounts on held-out words --------------------------------------------------------
def _run_sums(values: torch.Tensor, first: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """(Q,) int64 sums of values[first:end] for each query's range, from one running sum."""
    running = torch.zeros(len(values) + 1, dtype=torch.long)
    torch.cumsum(values, 0, out=running[1:])
    return running[end] - running[first]


class HeldOut(NamedTuple):
    """What "tuned" discounts are scored on: per distinct held-out n-gram, its weight and its features by order."""

    weights: torch.Tensor  # (M,) float64: how often each held-out n-gram occurs
    features: list[tuple[torch.Tensor, ...]]


def tuned_discounts(train: NGramCounts, held_out: NGramCounts) -> torch.Tensor:
    """(N, 3) discounts maximising the likelihood of the held-out words under a model counted on the rest of
    `train`."""
    what = f"tuning the discounts on {held_out.n_words:,} held-out words"
    reading = Phase(f"{what}: their n-grams, order by order", 2 * train.order, "steps")
    rest = train.without(held_out)  # a step of its own: a long list's 28M n-grams take seconds
    reading.advance()
    keys_by_order, counts_by_order = continuation_counts(rest, reading.advance)
    start = estimated_discounts(counts_by_order, "tuned")
    features = held_out_features(keys_by_order, counts_by_order, held_out, reading.advance)
    # D = limit · sigmoid(θ) keeps every discount inside its valid range
    theta = torch.logit((start / DISCOUNT_LIMITS).clamp(0.01, 0.99)).requires_grad_()
    optimizer = torch.optim.LBFGS([theta], max_iter=50, line_search_fn="strong_wolfe")
    phase = Phase(what, optimizer.defaults["max_eval"], "evaluations")

    def closure() -> torch.Tensor:
        phase.advance()
        optimizer.zero_grad()
        loss = held_out_nll(DISCOUNT_LIMITS * theta.sigmoid(), features, train.vocab_size)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    tuned = (DISCOUNT_LIMITS * theta.sigmoid()).detach()
    # LBFGS can only go downhill from the start, but keep the formulas if it found nothing better
    with torch.no_grad():
        better = (held_out_nll(tuned, features, train.vocab_size)
                  < held_out_nll(start, features, train.vocab_size))
    return tuned if better else start


def held_out_features(keys_by_order: list[torch.Tensor], counts_by_order: list[torch.Tensor],
                      held_out: NGramCounts, progress: Callable[[float], None] | None = None) -> HeldOut:
    """Per order, for each distinct held-out n-gram: its count in the rest, which discount applies to
    it (one-hot), whether its context was seen, and the context's total and numbers of tokens seen
    after it once, twice and 3+ times; each n-gram weighs as often as it was held out."""
    B = held_out.vocab_size + 1
    features = []
    for k, (keys, counts) in enumerate(zip(keys_by_order, counts_by_order), start=1):
        gram_keys = held_out.keys % B**k  # the k-gram ending at each held-out target
        pos, found = find_sorted(keys, gram_keys)
        # the k-grams of context h are the sorted run h·B + 1 .. h·B + V: its totals are differences of
        # running sums at the run's ends (exact integers), so nothing per context is held
        context = gram_keys // B
        first, end = torch.searchsorted(keys, context * B), torch.searchsorted(keys, context * B + B)
        # each running sum goes over every k-gram seen (28M of a long list's): a step of progress each
        sums = []
        for values in (counts, counts == 1, counts == 2, counts >= 3):
            sums.append(_run_sums(values, first, end))
            if progress:
                progress(1 / 5)
        totals = torch.stack(sums, 1)
        gram_count = torch.where(found, counts[pos], 0)
        count_class = torch.stack([gram_count == 1, gram_count == 2, gram_count >= 3], 1).double()  # (M, 3)
        features.append((gram_count.double(), count_class, end > first, totals.double()))
        if progress:
            progress(1 / 5)
    return HeldOut(held_out.counts.double(), features)


def held_out_nll(discounts: torch.Tensor, held_out: HeldOut, vocab_size: int) -> torch.Tensor:
    """Mean -log P of the held-out tokens under the interpolated model with these discounts (differentiable)."""
    prob = torch.full(held_out.weights.shape, 1.0 / vocab_size, dtype=torch.float64)
    for d, (gram_count, count_class, context_seen, totals) in zip(discounts, held_out.features):
        kept = gram_count - count_class @ d  # 0 for n-grams not seen
        discounted = totals[:, 1:] @ d  # D1·N1(h•) + D2·N2(h•) + D3+·N3+(h•)
        interpolated = (kept + discounted * prob) / totals[:, 0].clamp(min=1)
        prob = torch.where(context_seen, interpolated, prob)
    return -(held_out.weights * prob.log()).sum() / held_out.weights.sum()

