"""Interpolated Kneser-Ney in sparse form: one back-off table (Chen & Goodman 1998; see namesmith.models.ngram).

For a context h seen at order k,

    P_k(w | h) = α_k(h, w) + γ_k(h) · P_{k-1}(w | h[1:])

where α_k(h, w) = max(c(h w) - D, 0) / c(h) is non-zero only for the tokens w seen after h, and
γ_k(h) is the mass discounted from them; an unseen context passes straight through (weight 1).
So a context costs one weight γ plus one α per token seen after it, and the distribution after any
history is assembled when it is asked for: the α's of each stored suffix of the history, weighted by
the γ's of the longer suffixes, plus what is left for the base distribution below them all.

A `BackoffTable` holds one such model: the sorted keys of its contexts (the same int64 keys as the
dense n-gram: token t is digit t+1, base V+1, the latest token least significant), each context's γ,
and in compressed-sparse-row form the tokens seen after it with their α's. A table may also pass
part of a context's mass straight to its base (`to_base`, used by adapted lists). `kn_table` builds
one from a list's n-grams; namesmith.models.sparse_ngram chains them into a model.
"""

from __future__ import annotations

import torch
from torch import nn

from namesmith.core.errors import CheckpointError
from namesmith.data.ngram_keys import NGramCounts, find_sorted, suffix_keys, sum_by
from namesmith.models.kneser_ney import continuation_counts, interpolation, modified_kn_discounts

ROWS_CHUNK = 8192  # contexts whose distributions are assembled at once (bounds memory)...
# ...or fewer: each (rows, V) buffer of assembling them stays within 8 MB of float32. Assembling takes about ten
# such buffers at once, so 8,192 rows of a vocabulary of 1,187 characters (surnames) took 0.8 GB at the peak.
ROW_CELLS = 1 << 21
TOKEN_CHUNK = 1 << 16  # n-grams whose own probability is found at once (`BackoffTable.token_probs`)
TABLE_FIELDS = ("keys", "backoff", "to_base", "offsets", "next", "alpha")


def rows_at_once(vocab_size: int) -> int:
    """How many contexts' (V,) distributions are assembled at once: ROWS_CHUNK, fewer for a large vocabulary."""
    return max(1, min(ROWS_CHUNK, ROW_CELLS // vocab_size))


class BackoffTable(nn.Module):
    """One interpolated model in sparse form: per context its back-off weight γ and the α's of the
    tokens seen after it (see the module docstring). Built empty: the empty context, passing
    everything to the base."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(1, dtype=torch.long))  # (R,) sorted context keys
        self.register_buffer("backoff", torch.ones(1))  # (R,) γ: the weight of the shorter context
        self.register_buffer("to_base", torch.zeros(1))  # (R,) weight of the base directly (adapted lists only)
        self.register_buffer("offsets", torch.zeros(2, dtype=torch.long))  # (R+1,) row r: next[offsets[r]:offsets[r+1]]
        self.register_buffer("next", torch.zeros(0, dtype=torch.int32))  # (M,) tokens seen after each context
        self.register_buffer("alpha", torch.zeros(0))  # (M,) their α
        self._dense_cache: tuple[torch.Tensor, ...] | None = None  # see `_dense_levels`
        self._whole_cache: tuple[torch.Tensor, bool] | None = None  # see `_whole_rows`
        self._sums_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # see `_alpha_sums`

    def set(self, keys: torch.Tensor, backoff: torch.Tensor, to_base: torch.Tensor | None, offsets: torch.Tensor,
            next_tokens: torch.Tensor, alpha: torch.Tensor) -> BackoffTable:
        device = self.keys.device
        self.keys, self.offsets = keys.to(device, torch.long), offsets.to(device, torch.long)
        self.backoff, self.alpha = backoff.to(device, torch.float32), alpha.to(device, torch.float32)
        self.to_base = torch.zeros_like(self.backoff) if to_base is None else to_base.to(device, torch.float32)
        self.next = next_tokens.to(device, torch.int32)
        return self

    @classmethod
    def from_parts(cls, keys: torch.Tensor, backoff: torch.Tensor, gram_keys: torch.Tensor, alpha: torch.Tensor,
                   base: int, to_base: torch.Tensor | None = None) -> BackoffTable:
        """A table from sorted context keys and sorted (context, token) keys (context · base + token + 1)."""
        offsets = torch.cat([torch.searchsorted(gram_keys, keys * base), keys.new_tensor([len(gram_keys)])])
        return cls().set(keys, backoff, to_base, offsets, gram_keys % base - 1, alpha)

    @property
    def contexts(self) -> int:
        return len(self.keys)

    def add_rows(self, out: torch.Tensor, keys: torch.Tensor, last: torch.Tensor | None) -> torch.Tensor:
        """Assemble distributions into `out` (N, V), which holds the base rows; `keys` (N, L) are the
        suffix keys of each history, shortest first, and `last` (N,) its latest token. Returns the rows
        normalised.

        A stored context gives its α's, passes `backoff` to the next shorter stored context (the
        shortest to the base) and `to_base` straight to the base. The empty and one-token contexts
        are followed by many tokens (every character follows the empty context), so their α's are kept
        as dense (V,) and (V, V) tables and added with one multiply each; longer contexts, followed by a
        few tokens each, are scattered in. A table of whole distributions (a dense n-gram's: every
        context holds all V tokens and passes nothing down) is read as rows of a (contexts, V) matrix:
        the longest stored context's row."""
        pos, found = find_sorted(self.keys, keys)
        if self._whole_rows(out.size(1)):
            longest = (found * torch.arange(1, found.size(1) + 1, device=found.device)).argmax(-1)  # (N,)
            rows = self.alpha.view(-1, out.size(1))[pos.gather(1, longest.unsqueeze(1)).squeeze(1)]
            return rows / rows.sum(-1, keepdim=True)
        gamma = torch.where(found, self.backoff[pos], 1.0)  # unseen contexts pass everything down
        weight_below = gamma.flip(-1).cumprod(-1).flip(-1)  # (N, L): product of γ over this suffix and longer
        weight = torch.where(found, torch.cat([weight_below[:, 1:], torch.ones_like(gamma[:, :1])], -1), 0.0)
        direct = (weight * torch.where(found, self.to_base[pos], 0.0)).sum(-1)
        out.mul_((weight_below[:, 0] + direct).unsqueeze(1))  # the base: what the stored suffixes left it
        alpha0, alpha1 = self._dense_levels(out.size(1))
        out.add_(weight[:, :1] * alpha0)
        if keys.size(1) > 1:
            out.add_(weight[:, 1:2] * alpha1[last])
        rows, level = found[:, 2:].nonzero(as_tuple=True)
        ctx = pos[:, 2:][rows, level]
        starts, lengths = self.offsets[ctx], self.offsets[ctx + 1] - self.offsets[ctx]
        entry = torch.repeat_interleave(torch.arange(len(ctx), device=out.device), lengths)
        first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        gram = starts[entry] + torch.arange(len(entry), device=out.device) - first
        values = weight[:, 2:][rows, level][entry] * self.alpha[gram]
        out.index_put_((rows[entry], self.next[gram].long()), values, accumulate=True)
        return out / out.sum(-1, keepdim=True)

    def _whole_rows(self, vocab_size: int) -> bool:
        """Whether every context holds its whole distribution, all V tokens in order, and passes nothing
        down (namesmith.adaptation.adapt's form of a dense n-gram), checked on first use after the tables are set."""
        cache = self._whole_cache
        if cache is None or cache[0] is not self.keys:
            R = len(self.keys)
            whole = (len(self.next) == R * vocab_size and not bool(self.backoff.any()) and not bool(self.to_base.any())
                     and bool((self.next.view(R, vocab_size) == torch.arange(vocab_size, device=self.keys.device))
                              .all()))
            cache = self._whole_cache = (self.keys, whole)
        return cache[1]

    def _dense_levels(self, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(V,) α's after the empty context and (V, V) after each one-token context (row: that token),
        built on first use after the tables are set."""
        cache = self._dense_cache
        if cache is not None and cache[0] is self.keys:
            return cache[1], cache[2]
        V, device = vocab_size, self.keys.device
        short = int(torch.searchsorted(self.keys, torch.tensor(V + 1, device=device)))  # keys 0..V come first
        end = int(self.offsets[short])  # and so do their entries
        lengths = self.offsets[1 : short + 1] - self.offsets[:short]
        key = torch.repeat_interleave(self.keys[:short], lengths)  # the context key of each of those entries
        dense = torch.zeros(V + 1, V, device=device)  # row 0: the empty context; row t + 1: after token t
        dense.index_put_((key, self.next[:end].long()), self.alpha[:end], accumulate=True)
        self._dense_cache = (self.keys, dense[0], dense[1:])
        return dense[0], dense[1:]

    def token_probs(self, keys: torch.Tensor, tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(N,) P(token | history) of a table over the uniform base, for histories given by their suffix
        keys (N, L), shortest first: each stored suffix's α of that token, weighted by the γ's of the longer
        stored suffixes, plus what they leave the base, each row normalised as `add_rows` normalises it.
        The α of a token is found by a binary search in its context's run of `next` (sorted tokens)."""
        pos, found = find_sorted(self.keys, keys)
        gamma = torch.where(found, self.backoff[pos], 1.0)  # unseen contexts pass everything down
        weight_below = gamma.flip(-1).cumprod(-1).flip(-1)  # (N, L): product of γ over this suffix and longer
        weight = torch.where(found, torch.cat([weight_below[:, 1:], torch.ones_like(gamma[:, :1])], -1), 0.0)
        base = weight_below[:, 0] + (weight * torch.where(found, self.to_base[pos], 0.0)).sum(-1)
        if not len(self.next):
            return torch.full_like(base, 1.0 / vocab_size)
        low, high = self.offsets[pos], torch.where(found, self.offsets[pos + 1], self.offsets[pos])  # (N, L) runs
        wanted = tokens.to(self.next.dtype).unsqueeze(1).expand_as(low)
        while bool((low < high).any()):  # the first entry of each run not below the token
            middle = (low + high) // 2
            below = (low < high) & (self.next[middle.clamp(max=len(self.next) - 1)] < wanted)
            low, high = torch.where(below, middle + 1, low), torch.where(below | (low >= high), high, middle)
        end = torch.where(found, self.offsets[pos + 1], self.offsets[pos])
        hit = (low < end) & (self.next[low.clamp(max=len(self.next) - 1)] == wanted)
        alpha = torch.where(hit, self.alpha[low.clamp(max=len(self.alpha) - 1)], 0.0)
        prob = base / vocab_size + (weight * alpha).sum(-1)
        mass = base + (weight * torch.where(found, self._alpha_sums()[pos], 0.0)).sum(-1)  # the row's sum
        return prob / mass

    def _alpha_sums(self) -> torch.Tensor:
        """(R,) the sum of each context's α's (what `add_rows`' row sums are made of), built on first use a
        chunk of contexts at a time."""
        cache = self._sums_cache
        if cache is None or cache[0] is not self.keys:
            R, device = len(self.keys), self.keys.device
            sums = torch.zeros(R, dtype=torch.float64, device=device)
            for r0 in range(0, R, TOKEN_CHUNK):
                r1 = min(r0 + TOKEN_CHUNK, R)
                lengths = self.offsets[r0 + 1 : r1 + 1] - self.offsets[r0:r1]
                row = torch.repeat_interleave(torch.arange(r1 - r0, device=device), lengths)
                sums[r0:r1].index_add_(0, row, self.alpha[int(self.offsets[r0]) : int(self.offsets[r1])].double())
            cache = self._sums_cache = (self.keys, sums.float())
        return cache[1]

    def check(self, vocab_size: int, order: int, where: str) -> None:
        """Refuse tensors that are not a well-formed table (CheckpointError naming the problem)."""
        keys, backoff, to_base, offsets, next_tokens, alpha = (getattr(self, name) for name in TABLE_FIELDS)
        R, M = len(keys), len(next_tokens)
        problem = None
        if keys.dtype != torch.long or keys.dim() != 1 or R == 0 or keys[0] != 0:
            problem = "keys must be a non-empty sorted int64 vector starting with the empty context (0)"
        elif not bool((keys[1:] > keys[:-1]).all()) or keys[-1] >= (vocab_size + 1) ** max(order - 1, 0):
            problem = f"keys are not sorted keys of contexts of at most {order - 1} tokens (order mismatch?)"
        elif (tuple(backoff.shape) != (R,) or tuple(to_base.shape) != (R,)
              or not bool(((backoff >= 0) & (backoff <= 1 + 1e-4) & (to_base >= 0) & (to_base <= 1 + 1e-4)).all())):
            problem = "backoff and to_base must hold one weight in [0, 1] per context"
        elif (offsets.dtype != torch.long or tuple(offsets.shape) != (R + 1,) or offsets[0] != 0
              or offsets[-1] != M or not bool((offsets[1:] >= offsets[:-1]).all())):
            problem = "offsets must run from 0 to the number of entries, never decreasing"
        elif next_tokens.dtype != torch.int32 or tuple(alpha.shape) != (M,) or not alpha.is_floating_point():
            problem = "next (int32) and alpha must be vectors of the same length"
        elif M and (int(next_tokens.min()) < 0 or int(next_tokens.max()) >= vocab_size or float(alpha.min()) < 0):
            problem = f"next tokens must be in [0, {vocab_size}) and alpha not negative (vocabulary mismatch?)"
        elif not _counted_contexts(keys, next_tokens, vocab_size + 1):
            problem = f"keys are not contexts of counted n-grams over {vocab_size} tokens (was the vocabulary edited?)"
        else:
            owner = torch.repeat_interleave(torch.arange(R), offsets[1:] - offsets[:-1])
            mass = sum_by(owner, alpha, R) + backoff.double() + to_base.double()
            if not bool((mass <= 1 + 1e-3).all()):
                problem = "a context's weights add up to more than 1"
        if problem:
            raise CheckpointError(f"{where}: {problem}")


def _counted_contexts(keys: torch.Tensor, next_tokens: torch.Tensor, base: int) -> bool:
    """Whether the keys are those of contexts of counted n-grams: each a whole context (no digit 0, "no token",
    below its oldest token), stored with its suffix (the context without its oldest token), and made of tokens
    that the table predicts somewhere (each was once a next token; the boundary aside). Keys saved over a
    vocabulary that was then edited are read in another base: one character more breaks their digits and
    suffixes, 20,000 more read them as single tokens the table never predicts, where their range alone
    (checked before) still looks right (issue 31: such an old directory loaded and drew garbage)."""
    rest, oldest_place = keys.clone(), torch.ones_like(keys)
    used = torch.zeros(base, dtype=torch.bool)
    while bool((rest > 0).any()):  # peel the least significant digit (the latest token) off every key
        more = rest >= base
        digit = rest % base
        if bool((more & (digit == 0)).any()):
            return False
        used[digit[rest > 0]] = True
        oldest_place = torch.where(more, oldest_place * base, oldest_place)
        rest //= base
    predicted = torch.zeros(base, dtype=torch.bool)
    predicted[next_tokens.long() + 1] = True
    used[:2] = False  # "no token", and the boundary (the start of every name, predicted only as its end)
    return bool((predicted | ~used).all()) and bool(torch.isin(keys % oldest_place, keys).all())


def kn_table(windows: torch.Tensor, vocab_size: int, discount: str | float = "modified-kn") -> BackoffTable:
    """Interpolated (modified) Kneser-Ney from every n-gram (M, N) of the data: N-1 tokens of context
    (boundary-padded), then the target. Raw counts at the top order, continuation counts below."""
    B, N = vocab_size + 1, windows.size(1)
    keys, counts = torch.unique(suffix_keys(windows, B)[:, N], return_counts=True)  # the n-grams' keys
    keys_by_order, counts_by_order = continuation_counts(NGramCounts(N, vocab_size, keys, counts, 0))
    context_keys, backoffs, alphas = [], [], []
    for keys, counts in zip(keys_by_order, counts_by_order):  # order 1 (the empty context) first: keys stay sorted
        if discount == "modified-kn":
            n1, n2, n3, n4 = (int((counts == i).sum()) for i in (1, 2, 3, 4))
            discounts = torch.tensor(modified_kn_discounts(n1, n2, n3, n4), dtype=torch.float64)
        else:
            discounts = torch.full((3,), float(discount), dtype=torch.float64)
        contexts, _, alpha, backoff, _ = interpolation(keys, counts, discounts, B)
        context_keys.append(contexts)
        backoffs.append(backoff)
        alphas.append(alpha)
    return BackoffTable.from_parts(torch.cat(context_keys), torch.cat(backoffs), torch.cat(keys_by_order),
                                   torch.cat(alphas), B)
