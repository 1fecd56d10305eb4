"""The n-gram key: an n-gram's tokens + 1 as the digits, base vocab_size + 1, of one int64 (oldest first).

Keys of different lengths never collide (digit 0 means "no token"), a key's suffixes are its remainders
modulo powers of the base, and sorting keys groups n-grams by context. Everything that counts n-grams
(`NGramCounts`: a word list counted in memory by `namesmith.models.ngram.NGram.count`, or in shards by
`namesmith.data.counting.count_ngrams_file`) and every count model that reads them shares these rules:
the highest order whose keys fit in int64, the default order, and which training words are held out
to tune an n-gram's discounts, and how stored keys are checked to be whole n-grams of one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from namesmith.core.errors import ConfigError
from namesmith.core.vocab import BOUNDARY

MAX_KEY = 2**63 - 1  # n-gram keys are int64
CONTEXT_CHUNK = 1 << 21  # sorted keys read at a time by `distinct_contexts` (bounds the memory of the quotients)
DEFAULT_ORDER = 6  # the n-gram's order unless the user sets one, or the vocabulary allows less (`default_order`)


def max_order(vocab_size: int) -> int:
    """The highest order whose n-gram keys, (V + 1)^order, fit in int64 (5 for a vocabulary of 1,448 to 6,207
    tokens: a list of Chinese or Japanese names, say)."""
    order = 1
    while (vocab_size + 1) ** (order + 1) <= MAX_KEY:
        order += 1
    return order


def default_order(vocab_size: int) -> int:
    """The order of an n-gram the user did not give one: DEFAULT_ORDER, or less where its keys would not fit."""
    return min(DEFAULT_ORDER, max_order(vocab_size))


def check_order(order: int, vocab_size: int, option: str = "order") -> None:
    """A ConfigError naming `option` if order-`order` keys over `vocab_size` tokens would overflow int64."""
    if order > max_order(vocab_size):
        raise ConfigError(f"{option} {order} is too high for a vocabulary of {vocab_size} tokens (n-gram keys would "
                          f"overflow int64); use at most {max_order(vocab_size)}", field=option)


def check_order_value(order: object, option: str = "order") -> None:
    """A ConfigError naming `option` unless `order` is an integer of at least 1."""
    if not (isinstance(order, int) and not isinstance(order, bool) and order >= 1):
        raise ConfigError(f"{option} must be an integer of at least 1, got {order!r}", field=option)


HELD_OUT_EVERY = 10  # "tuned": every 10th training word is held out to tune the discounts...
MAX_HELD_OUT = 100_000  # ...or fewer on large lists, so that tuning takes the same time on any size


def held_out_every(n_train: int) -> int:
    """One training word in how many is held out to tune "tuned" discounts: 10, more above a million words."""
    return max(HELD_OUT_EVERY, -(-n_train // MAX_HELD_OUT))


@dataclass(frozen=True)
class NGramCounts:
    """How often each order-N n-gram occurs in some words: all an n-gram is fitted from.

    An n-gram is an int64 key whose digits, base vocab_size + 1, are its tokens + 1, oldest first
    (the module docstring); a word of L characters gives L + 1 of them, its first left-padded with N - 1
    boundary tokens. Only the top order is stored: every lower-order n-gram seen ends some top-order
    n-gram seen (the padding sees to that), so its continuation count follows from the distinct
    top-order keys. Counts of disjoint sets of words add up (`merge`), which is what lets counting
    be split over shards, processes and machines and still give exactly the counts of one pass.
    """

    order: int
    vocab_size: int  # tokens, the boundary included (`Vocab.size`)
    keys: torch.Tensor  # (M,) int64, sorted and distinct: the n-grams seen
    counts: torch.Tensor  # (M,) int64 ≥ 1: how often each was seen
    n_words: int  # words counted

    @property
    def n_tokens(self) -> int:
        """Target tokens counted: characters plus one end token per word."""
        return int(self.counts.sum())

    def _check_fits(self, other: NGramCounts) -> None:
        if (other.order, other.vocab_size) != (self.order, self.vocab_size):
            raise ValueError(f"counts of order {other.order} over {other.vocab_size} tokens cannot be combined "
                             f"with counts of order {self.order} over {self.vocab_size} tokens")

    def merge(self, *others: NGramCounts) -> NGramCounts:
        """The counts of these disjoint sets of words together (exact: integer sums)."""
        for other in others:
            self._check_fits(other)
        keys, inverse = torch.unique(torch.cat([self.keys, *(o.keys for o in others)]), return_inverse=True)
        counts = torch.zeros(len(keys), dtype=torch.long).index_add_(
            0, inverse, torch.cat([self.counts, *(o.counts for o in others)]))
        return NGramCounts(self.order, self.vocab_size, keys, counts, self.n_words + sum(o.n_words for o in others))

    def without(self, subset: NGramCounts) -> NGramCounts:
        """These counts less those of a subset of the same words: the counts of the other words."""
        self._check_fits(subset)
        pos, found = find_sorted(self.keys, subset.keys)
        if not bool(found.all() and (self.counts[pos] >= subset.counts).all()):
            raise ValueError("subset: holds n-grams these counts do not (not counted from a subset of the words)")
        counts = self.counts.clone()
        counts[pos] -= subset.counts
        kept = counts > 0
        return NGramCounts(self.order, self.vocab_size, self.keys[kept], counts[kept], self.n_words - subset.n_words)


def find_sorted(sorted_keys: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of `queries` (any shape) in `sorted_keys` and whether each is there: the one lookup of keys in
    a sorted table (contexts, n-grams, states). A query that is not there gets some valid position (0 in an
    empty table), so its position can index the table; mask it with the second tensor."""
    if not len(sorted_keys):
        return torch.zeros_like(queries), torch.zeros_like(queries, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, queries.contiguous()).clamp_(max=len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == queries


def suffix_keys(tokens: torch.Tensor, base: int) -> torch.Tensor:
    """(..., L+1) the keys of the suffixes of length 0..L of token windows (..., L), oldest token first: the empty
    one (key 0) first, then the last token's, the last two tokens', ... So for a window of n-gram tokens (context,
    then target), column k is the key of the k-gram that ends it."""
    place = base ** torch.arange(tokens.size(-1), device=tokens.device)
    digits = (tokens.flip(-1) + 1) * place  # the latest token is the least significant digit
    return torch.cat([tokens.new_zeros(*tokens.shape[:-1], 1), digits.cumsum(-1)], -1)


def gram_tokens(keys: torch.Tensor, base: int, context_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of n-gram keys (M,) of context_size + 1 tokens: their contexts (M, context_size), oldest token
    first, and their last tokens (M,)."""
    place = base ** torch.arange(context_size - 1, -1, -1, device=keys.device)  # oldest context token first
    return (keys[:, None] // base // place) % base - 1, keys % base - 1


def sum_by(group: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """Per-group sums, float64 (a scatter-add): `values` (n, ...) summed by their group index (n,) into
    (size, ...). Sorted keys group n-grams by context, so with each n-gram's context as its group (the inverse
    of `torch.unique(keys // base, return_inverse=True)`) this gives every context's total, c(h) = Σ_w c(h w),
    its kept and discounted masses and the like: the sums Kneser-Ney's weights are made of."""
    return torch.zeros(size, *values.shape[1:], dtype=torch.float64).index_add_(0, group, values.double())


def longest_match_transitions(keys: torch.Tensor, base: int, context_size: int, vocab_size: int) -> torch.Tensor:
    """(S, V) the next state of a chain whose states are sorted context keys (S,) of at most `context_size`
    tokens, every stored context's suffixes stored too (the empty one, key 0, first): after token w, state s goes
    to the longest stored suffix of (s's context + w), KenLM's "longest match". That is (s + w) where it is
    stored, else the state its parent (s without its oldest token) goes to: a stored u w means u is stored, so u
    is a suffix of s. Built by context length, shortest first, so a parent's row is there before its children."""
    B, K, V = base, context_size, vocab_size
    smallest_keys = torch.tensor([sum(B**i for i in range(j)) for j in range(K + 2)], device=keys.device)
    starts = torch.searchsorted(keys, smallest_keys).tolist()  # keys of j tokens lie in rows starts[j]..
    table = torch.zeros(len(keys), V, dtype=torch.long, device=keys.device)
    digits = torch.arange(1, V + 1, device=keys.device)  # token w is digit w+1
    for j in range(K + 1):
        rows = slice(starts[j], starts[j + 1])
        contexts = keys[rows]  # (C,) contexts of j tokens
        if j == 0:
            fallback = torch.zeros(len(contexts), V, dtype=torch.long, device=keys.device)
        else:
            fallback = table[find_sorted(keys, contexts % B ** (j - 1))[0]]  # the parent's transitions
        if j < K:
            pos, found = find_sorted(keys, contexts[:, None] * B + digits)  # (C, V): context + w, one token longer
            table[rows] = torch.where(found, pos, fallback)
        else:
            table[rows] = fallback  # a full context drops its oldest token: the parent's transition
    return table


def distinct_contexts(sorted_keys: torch.Tensor, base: int) -> int:
    """How many contexts (the key less its last token) sorted n-gram keys have: where the context changes."""
    count = 0
    for start in range(0, len(sorted_keys), CONTEXT_CHUNK):  # (chunks bound the memory of the quotients)
        contexts = sorted_keys[max(start - 1, 0) : start + CONTEXT_CHUNK] // base
        count += int((contexts[1:] != contexts[:-1]).sum()) + (start == 0)
    return count


def whole_grams(keys: torch.Tensor, base: int, order: int) -> bool:
    """Whether every key holds exactly `order` tokens: `order` digits in base `base`, none of them 0 ("no token";
    a token t is digit t+1). The keys of a vocabulary edited to more characters are read in a larger base, in
    which they have fewer digits (20,000 more: a 3.4 GB table was built from them, then an IndexError)."""
    rest = keys
    for _ in range(order):
        if bool((rest % base == 0).any()):
            return False
        rest = rest // base
    return not bool(rest.any())


def grams_follow_one_another(keys: torch.Tensor, offsets: torch.Tensor, base: int, order: int) -> bool:
    """Whether, in each combination, every n-gram that does not start with the boundary follows one that ends with
    its first order-1 tokens, as the n-grams of a name follow one another: keys read in another base (a vocabulary
    edited by a character or two) break this almost surely, where their digits alone may still look whole."""
    if order < 2:
        return True
    top = base ** (order - 1)  # the oldest token's place value
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        grams = keys[start:end]
        inner = grams[grams // top != BOUNDARY + 1]  # n-grams whose oldest token is a character
        if not bool(torch.isin(inner // base, grams % top).all()):  # its first order-1 tokens: some n-gram's last
            return False
    return True
