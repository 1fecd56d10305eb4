"""Exact conditioning: sampling a finite Markov chain conditioned on the constraints' automaton, with no
rejected draws (the backward messages of a hidden Markov model, Rabiner 1989).

It applies to models with finitely many states whose next-token distribution depends on the state only:
the bigram models (state = last token), the n-gram (state = the context row it stores, KenLM's "longest
match": its back-off maps every longer history onto a stored row, and token c moves row r to
`transitions[r, c]`), and window models (MLP, WaveNet) with at most `MAX_ENUMERATED_CONTEXTS` contexts
V^k, tabulated once. Such a model is a finite Markov chain (`markov_chain`; the order-6 n-gram of the
built-in list has 62,900 rows). The constraints `ends_with`, `contains`, `excludes` and `syllables`
form a finite automaton (namesmith.generation.constraints). On the product chain, restricted to the
(automaton state q, chain state s) pairs reachable from the prefix by tokens of non-zero probability,
the backward messages

    β_ℓ(q, s) = P(end | s)·[q accepts, ℓ ≥ min_len] + Σ_c P(c | s)·β_{ℓ+1}(δ(q, c), s·c)

are the probabilities of finishing validly from length ℓ, with β_{max_len+1} = 0. Drawing each next
token from P(c | s)·β_{ℓ+1}(...) (normalised) samples exactly from the model conditioned on the
constraints (`ExactSampler`). The messages are computed in log space and shifted per step (their scale
kept aside), so a 5,000-character minimum does not underflow them into "impossible". P is the sampling
distribution itself (after temperature, top-k and top-p), so conditioning composes with them. (For that
n-gram and `ends_with="ette"`, 59,498 (q, row) states are reachable and the tables take about half a
second; then names cost microseconds.)

The tables are at most `MAX_EXACT_CELLS`/`MAX_EXACT_TABLE` entries (else `NotAvailable`: rejection, or a
`ConfigError` for `method="exact"`), and a process's builds and the tables it keeps are bounded by
namesmith.generation.exact_cache.TableBudget. namesmith.generation.generate imports this module (and
torch) only when constraints ask for it.
"""

from __future__ import annotations

import copy
import math
import mmap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from namesmith.core.clock import now
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.generation.calibration import chain_end_log_weights
from namesmith.generation.config import GenerateConfig, NotAvailable, OutOfTime
from namesmith.generation.constraints import MAX_AUTOMATON_STATES, Automaton, build_automaton
from namesmith.generation.draws import Batch, finish_batch, token_dtype
from namesmith.generation.exact_cache import TABLES, ExactCache, TableBudget
from namesmith.generation.sample import draw_numpy, next_token_probs
from namesmith.models.base import CharModel

MAX_ENUMERATED_CONTEXTS = 20_000  # window models: contexts (V^k) up to which the model is tabulated as a chain
MAX_EXACT_CELLS = 1 << 24  # reachable (automaton, chain) states × V, at most: the exact sampler's step table
MAX_EXACT_TABLE = 1 << 25  # (length, reachable state) log-messages kept (float32), at most
BUILD_CELLS = 1 << 18  # (state, token) cells the exact tables are built in at a time (the temporaries' size)
MAX_VISITED_FLAGS = 1 << 26  # (automaton × chain) states up to which the search for reachable ones flags each pair
PRECOMPUTE_CDFS = 1 << 22  # (length, state, token) entries up to which the sampling CDFs are tabulated
LOG_SMALLEST_NORMAL = math.log(np.finfo(np.float64).tiny)  # about -708: below it float64 loses digits


# --- the model as a finite Markov chain --------------------------------------------------------
@dataclass
class MarkovChain:
    """A model with finitely many states: in state s the next token is c with probability
    probs[s, c], and the state becomes next_state[s, c]."""

    probs: torch.Tensor  # (S, V) float64 sampling distribution (after temperature, top-k, top-p)
    next_state: torch.Tensor  # (S, V) long
    start: int  # the state after the boundary token that starts every name
    # (T + 1, S) float64: log-weight of ending in state s at length min(ℓ, T), a calibrated model's tilt
    # (namesmith.generation.calibration); None: every ending weighs 1
    end_log_weights: torch.Tensor | None = None

    def state_after(self, tokens: list[int]) -> int:
        state = self.start
        for t in tokens:
            state = int(self.next_state[state, t])
        return state


@torch.inference_mode()
def markov_chain(model: CharModel, vocab_size: int, config: GenerateConfig) -> MarkovChain | None:
    """The model as a finite Markov chain, if it is one with few enough states (else None).

    A model that declares its chain (`CharModel.markov_chain`: the n-gram's stored context rows, a
    bigram's last token) is that chain; a window model's (context k) states are the V^k contexts,
    tabulated by running the model. A calibrated model's chain carries its tilt as weights on
    ending (`MarkovChain.end_log_weights`); None if its states do not know their last token.
    """
    V, k = vocab_size, model.context_size
    own_chain = model.markov_chain()
    if own_chain is not None:
        logits, next_state, start = own_chain
    elif k is not None and V**k <= MAX_ENUMERATED_CONTEXTS:
        S = V**k  # state = the last k tokens as base-V digits, oldest first; all boundaries at the start
        contexts = (torch.arange(S).unsqueeze(1) // V ** torch.arange(k - 1, -1, -1) % V) if k else \
            torch.zeros(1, 1, dtype=torch.long)  # (S, k)
        logits = torch.cat([model(contexts[i:i + 4096].to(model.device))[:, -1].float().cpu()
                            for i in range(0, S, 4096)])
        next_state, start = (torch.arange(S).unsqueeze(1) * V + torch.arange(V)) % S, 0
    else:
        return None
    probs = next_token_probs(logits.float().cpu(), **config.decoding).double()
    next_state = next_state.cpu().long()
    end_log_weights = None
    if model.calibration is not None:
        end_log_weights = chain_end_log_weights(model.calibration, next_state, probs, int(start))
        if end_log_weights is None:
            return None
    return MarkovChain(probs, next_state, int(start), end_log_weights)


def reachable_states(chain: MarkovChain, automaton: Automaton, start: tuple[int, int], max_states: int,
                     deadline: float | None = None,
                     clock: Callable[[], float] = now) -> torch.Tensor | None:
    """Sorted codes q·S + s of the (automaton, chain) states reachable from `start` by tokens of
    non-zero probability that no excluded pattern forbids (None: more than max_states). `OutOfTime`
    once `deadline` (on `clock`) passes: with a syllable range, the order-6 n-gram has about 150,000
    such states, and the search took over a minute on a busy machine, past any time budget. A level's
    states are stepped `BUILD_CELLS` (state, token) pairs at a time: whole, the us model's widest level
    with a 4-5 range took 200 MiB of temporaries."""
    S = chain.probs.size(0)
    possible = chain.probs[:, 1:] > 0  # (S, V-1): the end token leads nowhere
    delta = torch.from_numpy(automaton.delta)
    frontier = torch.tensor([start[0] * S + start[1]])
    # the states seen, as one flag per (q, s) pair where that fits (a lookup per step, where testing each level
    # against the sorted list of all states seen so far cost the order-6 n-gram's syllable ranges 18 s), else a list.
    # The flags get a mapping of their own, which goes back to the system when the search ends: from the heap, the
    # us model's 21 MB stayed with the process while the tables were built.
    flags = mmap.mmap(-1, len(automaton.delta) * S) if len(automaton.delta) * S <= MAX_VISITED_FLAGS else None
    visited = None if flags is None else torch.from_numpy(np.frombuffer(flags, dtype=np.bool_))
    seen = frontier
    if visited is not None:
        visited[frontier] = True
    found, rows = 1, max(1, BUILD_CELLS // delta.size(1))
    while len(frontier):
        new = []
        for lo in range(0, len(frontier), rows):
            if deadline is not None and clock() > deadline:
                raise OutOfTime
            q, s = frontier[lo:lo + rows] // S, frontier[lo:lo + rows] % S
            nq, ns = delta[q, 1:], chain.next_state[s, 1:]  # (rows, V-1)
            nxt = (nq * S + ns)[(nq >= 0) & possible[s]]
            if visited is not None:  # the new states, flagged as they are found
                fresh = nxt[~visited[nxt]]
                visited[fresh] = True
                new.append(torch.unique(fresh))
            else:
                new.append(torch.unique(nxt))
        nxt = torch.unique(torch.cat(new))  # each state once, in order
        if visited is not None:
            frontier = nxt
        else:
            frontier = nxt[~torch.isin(nxt, seen)]
            seen = torch.cat([seen, frontier])
        found += len(frontier)
        if found > max_states:
            if flags is not None:
                del visited
                flags.close()
            return None
    if visited is None:
        return seen.sort().values
    codes = visited.nonzero().squeeze(1)
    del visited
    flags.close()
    return codes


def _log_weights(log_probs: torch.Tensor, end: torch.Tensor, step: torch.Tensor, beta_next: torch.Tensor,
                 can_end: bool) -> torch.Tensor:
    """Log-weights (n, V) of the next token from n product states: token c ≥ 1 continues into
    β_{ℓ+1} of the state it leads to (`step`, the sentinel slot where it cannot); the end token
    ends here if the name may end (`end`: on β_{ℓ+1}'s scale, -inf where the automaton rejects)."""
    w = log_probs + beta_next.index_select(0, step.view(-1)).view_as(step)  # index_select: faster than [step]
    w[:, BOUNDARY] = end if can_end else -math.inf
    return w


def _normalised_cdf(log_weights: torch.Tensor) -> torch.Tensor:
    """Row-wise CDF (unnormalised is fine for `draw`) of log-weights; rows that are all -inf give 0s."""
    top = log_weights.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (log_weights - top).exp_().cumsum(1)


def exact_table_bytes(states: int, vocab_size: int, room: int, chain_states: int,
                      ending_rows: int | None = None, automaton_states: int = 1) -> int:
    """An upper estimate of the memory an `ExactSampler` takes at the peak of its build, for `states`
    reachable (automaton, chain) states, `room` + 1 lengths and a chain of `chain_states`: the tables it
    keeps (next state int32 per (state, token); β float32 per (length, state); the chain's
    log-probabilities float32 and its ending weights float64 per (chain state, token or length); the
    CDFs float32 where tabulated), the temporaries of building them, one block of `BUILD_CELLS` (state,
    token) cells at a time (at most six int64/float64 arrays of a block: the automaton and chain steps,
    their codes, their places, the gathered probabilities and messages), the (state,) vectors (codes,
    their automaton and chain parts, messages, end) and the chain's own (S, V) probabilities and next
    states. `ending_rows`: the rows of a calibrated chain's ending weights kept (0: none; None: one per
    length, the most there can be). The search for the reachable states comes first, and its memory is
    gone when the tables are built: its flag per (automaton, chain) pair, one block's temporaries and
    the states found (`automaton_states`: how many the automaton has)."""
    cells = states * vocab_size
    cdfs = 4 * (room + 1) * cells if (room + 1) * cells <= PRECOMPUTE_CDFS else 0
    kept = 4 * cells + 4 * (room + 2) * (states + 1) + cdfs + 4 * chain_states * vocab_size
    kept += 8 * (room + 1 if ending_rows is None else ending_rows) * chain_states  # a calibrated chain's
    building = 6 * 8 * min(cells, BUILD_CELLS) + 8 * 8 * states  # a block's (row, token) arrays; (state,) vectors
    pairs = automaton_states * chain_states
    search = (pairs if pairs <= MAX_VISITED_FLAGS else 0) + 6 * 8 * min(cells, BUILD_CELLS) + 3 * 8 * states
    return max(kept + building, search) + 16 * chain_states * vocab_size


class ExactSampler:
    """Samples the chain conditioned on the automaton accepting and min_len ≤ length ≤ max_len.

    It keeps, per reachable product state, its next state per token (`step`, int32) and β per length;
    what depends on the chain state alone (log-probabilities, a calibrated chain's ending weights) is kept
    once per chain state and looked up through `chain_state`: a syllable range multiplies the chain's
    states by about four, and these per-product copies were most of the tables."""

    def __init__(self, chain: MarkovChain, automaton: Automaton, vocab: Vocab, prefix: str, min_len: int,
                 max_len: int, seed: int, deadline: float | None = None, *, max_bytes: int | None = None,
                 clock: Callable[[], float] = now):
        """`deadline` is on `clock`; `max_bytes` bounds `exact_table_bytes` (NotAvailable beyond it, before
        the tables are allocated)."""
        self.vocab, self.prefix, self.min_len, self.max_len = vocab, prefix, min_len, max_len
        S, V = chain.probs.shape
        self.p0 = len(prefix)
        room = max_len - self.p0
        if room < 0:
            raise NotAvailable("the prefix is longer than the longest name allowed")
        start = (automaton.start, chain.state_after(vocab.encode(prefix)))
        codes = reachable_states(chain, automaton, start, MAX_EXACT_CELLS // V, deadline, clock)
        if codes is None:
            raise NotAvailable(f"more than {MAX_EXACT_CELLS // V:,} (constraint, model) states "
                            "(namesmith.generation.exact.MAX_EXACT_CELLS)")
        N = len(codes)
        if (room + 2) * (N + 1) > MAX_EXACT_TABLE:
            raise NotAvailable(f"{N:,} states × {room + 1} lengths is more than {MAX_EXACT_TABLE:,} "
                            "(namesmith.generation.exact.MAX_EXACT_TABLE)")
        needed = exact_table_bytes(N, V, room, S, _ending_rows(chain, self.p0, room), len(automaton.delta))
        if max_bytes is not None and needed > max_bytes:
            raise NotAvailable(f"its tables would take about {needed / 1e6:,.0f} MB to build, more than the "
                               f"{max_bytes / 1e6:,.0f} MB one build may take (table_bytes)")
        q_of, s_of = codes // S, codes % S
        self.chain_state = s_of.int()  # (N,) the chain state of each product state
        self.chain_log_probs = chain.probs.log().float()  # (S, V): what `run` weighs tokens by
        self.step = torch.empty(N, V, dtype=torch.int32)  # next product state; N (the sentinel): none
        rows = max(1, BUILD_CELLS // V)
        delta = torch.from_numpy(automaton.delta)
        possible = chain.probs > 0  # (S, V)
        for lo in range(0, N, rows):  # a block of rows at a time: the build's temporaries are a block's
            if deadline is not None and clock() > deadline:
                raise OutOfTime
            q, s = q_of[lo:lo + rows], s_of[lo:lo + rows]
            nq = delta[q]  # (rows, V)
            targets = (nq * S + chain.next_state[s]).clamp_min_(0)
            step = torch.searchsorted(codes, targets).clamp_max_(N - 1)
            blocked = (nq < 0) | ~possible[s]
            blocked[:, BOUNDARY] = True
            assert (codes[step] == targets)[~blocked].all(), "every possible step stays among the reachable states"
            step[blocked] = N  # the sentinel: the end token, impossible tokens, excluded patterns
            self.step[lo:lo + rows] = step
        del targets, step, nq, blocked
        # end stays float64: it is shifted by log_scale
        accept = torch.from_numpy(automaton.accept)[q_of]
        end = torch.where(accept, chain.probs[s_of, BOUNDARY].log(), -math.inf)  # (N,)
        self.z0 = int(torch.searchsorted(codes, torch.tensor(start[0] * S + start[1])))
        self.end = end
        del codes, q_of, s_of
        # a calibrated chain's weights on ending, (rows, S): a name ending t characters after the prefix, at length
        # |prefix| + t, weighs row min(|prefix| + t, T) of the chain's (T + 1, S): row min(t, rows - 1) here
        self.end_weights = None
        if chain.end_log_weights is not None:
            T = chain.end_log_weights.size(0) - 1
            rows = _ending_rows(chain, self.p0, room)
            self.end_weights = chain.end_log_weights[(torch.arange(rows) + self.p0).clamp_max(T)]
        self.generator = torch.Generator().manual_seed(seed)
        self._backward(chain.probs, room, deadline, clock)
        kept = [self.step, self.end, self.beta, self.log_scale, self.chain_state, self.chain_log_probs,
                *(t for t in (self.cdf, self.end_weights) if t is not None)]
        self.nbytes = sum(t.nbytes for t in kept)

    def _backward(self, chain_probs: torch.Tensor, room: int, deadline: float | None,
                  clock: Callable[[], float] = now) -> None:
        """β̃ (room + 2, N + 1) float32: row t holds log β at length |prefix| + t, shifted so its
        largest entry is 0 (the shift in `log_scale`); the last row and column are the -inf sentinels.

        Where no term P(c | s)·β̃_{ℓ+1} can fall below float64's normal range, a step sums them as
        probabilities, β̃_{ℓ+1} ≤ 0 exponentiated once per state: a gather, a product and a sum per
        (state, token), where the log-sum-exp of each row took 4-6 times as long (the order-6 n-gram's
        4-5 syllables passed the 30 s a server's build may take). Other steps, and models small enough
        to tabulate their CDFs, sum in log space."""
        N = len(self.end)
        self.beta = torch.full((room + 2, N + 1), -math.inf)
        self.log_scale = torch.zeros(room + 2, dtype=torch.float64)
        tabulate = (room + 1) * N * chain_probs.size(1) <= PRECOMPUTE_CDFS
        self.cdf = torch.empty(room + 1, N, chain_probs.size(1)) if tabulate else None
        rows = max(1, BUILD_CELLS // chain_probs.size(1))
        # a block at a time: a copy of the chain's positive probabilities would be the size of its table
        least_prob = min((float(b[b > 0].min()) for b in chain_probs.split(rows) if bool((b > 0).any())), default=1.0)
        beta_next = torch.full((N + 1,), -math.inf, dtype=torch.float64)
        beta = torch.empty(N, dtype=torch.float64)
        for t in range(room, -1, -1):
            end = self.end_at(t) - self.log_scale[t + 1]  # relative to β_{ℓ+1}'s scale
            can_end = self.p0 + t >= self.min_len
            finite = beta_next[torch.isfinite(beta_next)]
            lowest = float(finite.min()) if len(finite) else 0.0
            as_probs = not tabulate and math.log(least_prob) + lowest > LOG_SMALLEST_NORMAL
            if as_probs:
                x_next = beta_next.exp()  # (N + 1,) in [0, 1]; 0 at the sentinel
            for lo in range(0, N, rows):  # a block of rows at a time: the temporaries are a block's
                if deadline is not None and clock() > deadline:
                    raise OutOfTime
                step, chain_state = self.step[lo:lo + rows], self.chain_state[lo:lo + rows]
                if as_probs:  # the end token's column steps to the sentinel, so it adds 0 here
                    terms = chain_probs.index_select(0, chain_state).mul_(
                        x_next.index_select(0, step.view(-1)).view_as(step))
                    going = terms.sum(1).log_()
                    beta[lo:lo + rows] = torch.logaddexp(going, end[lo:lo + rows]) if can_end else going
                    continue
                w = _log_weights(chain_probs.index_select(0, chain_state).log_(), end[lo:lo + rows], step, beta_next,
                                 can_end)
                beta[lo:lo + rows] = torch.logsumexp(w, 1)
                if self.cdf is not None:
                    self.cdf[t, lo:lo + rows] = _normalised_cdf(w).float()
            shift = float(beta.max())
            shift = shift if math.isfinite(shift) else 0.0
            beta_next[:N] = beta - shift
            self.beta[t, :N] = beta_next[:N].float()
            self.log_scale[t] = self.log_scale[t + 1] + shift

    def end_at(self, t: int, states: torch.Tensor | None = None) -> torch.Tensor:
        """float64 log P(end | state) of every product state (or of `states`), weighted as a name of length
        |prefix| + t ends (calibration)."""
        end = self.end if states is None else self.end[states]
        if self.end_weights is None:
            return end
        chain_state = self.chain_state if states is None else self.chain_state[states]
        return end + self.end_weights[min(t, len(self.end_weights) - 1)].index_select(0, chain_state)

    def steps_from(self, states: torch.Tensor) -> torch.Tensor:
        """(n, V) next states of `states` (n,), which may hold the sentinel N: it leads to itself (guided
        sampling parks finished names and invalid prefixes there)."""
        N = len(self.end)
        steps = self.step.index_select(0, states.clamp_max(N - 1))
        steps[states == N] = N
        return steps

    def ends_from(self, states: torch.Tensor) -> torch.Tensor:
        """`end` of `states` (n,), -inf at the sentinel N (it never ends)."""
        N = len(self.end)
        return torch.where(states < N, self.end.index_select(0, states.clamp_max(N - 1)), -math.inf)

    @property
    def log_p_valid(self) -> float:
        """log P(the model's name with this prefix satisfies the constraints)."""
        return float(self.beta[0, self.z0].double() + self.log_scale[0])

    @torch.inference_mode()
    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names, every one valid (None: the deadline passed first).

        The loop runs in NumPy (a request's batch is small, and NumPy's calls cost a fraction of
        torch's); the uniforms come from the torch generator, so a seed draws what it always has."""
        room = self.max_len - self.p0
        tokens = np.zeros((batch, max(room, 0)), dtype=token_dtype(self.vocab.size))
        lengths = np.full(batch, -1, dtype=np.int64)
        active = np.arange(batch)
        z = np.full(batch, self.z0, dtype=np.int64)
        step, beta = self.step.numpy(), self.beta.numpy()
        chain_state, chain_log_probs = self.chain_state.numpy(), self.chain_log_probs.numpy()
        log_scale = self.log_scale.numpy()
        for t in range(room + 1):
            if deadline is not None and now() > deadline:
                return None
            if self.cdf is not None:
                cdf = self.cdf[t].numpy()[z]
            else:  # _log_weights and _normalised_cdf for these rows, in NumPy
                w = chain_log_probs[chain_state[z]] + beta[t + 1][step[z]]
                w[:, BOUNDARY] = (self.end_at(t, torch.from_numpy(z)).numpy() - log_scale[t + 1]).astype(np.float32) \
                    if self.p0 + t >= self.min_len else -np.inf
                top = w.max(1, keepdims=True)
                top[~np.isfinite(top)] = 0.0
                cdf = np.exp(w - top).cumsum(1)
            nxt = draw_numpy(cdf, self.generator)
            ended = nxt == BOUNDARY
            lengths[active[ended]] = t
            going = np.flatnonzero(~ended)
            if len(going) == 0:
                break
            active, nxt, z = active[going], nxt[going], z[going]
            tokens[active, t] = nxt
            z = step[z, nxt]
        assert (lengths >= 0).all(), "the last step can only end the name"
        return finish_batch(tokens, lengths, self.vocab, self.prefix)


def _ending_rows(chain: MarkovChain, p0: int, room: int) -> int:
    """Rows of the chain's ending weights a sampler keeps: lengths p0 .. p0 + room, those from T on sharing row T."""
    if chain.end_log_weights is None:
        return 0
    return min(room, max(chain.end_log_weights.size(0) - 1 - p0, 0)) + 1


def exact_sampler(model: CharModel, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
                  deadline: float | None = None, cache: ExactCache | None = None) -> ExactSampler:
    """The exact sampler for this model and these constraints, from `cache` when it holds them (or,
    for a background cache, once its build ends, if that is before `deadline`). Builds keep within
    the cache's `TableBudget` (the process's without a cache)."""
    key = ExactCache.key(config, max_len)
    budget = cache.budget if cache is not None else TABLES
    entry = cache.get(key) if cache is not None else None
    if entry is None and cache is not None and cache.background:
        entry = cache.build_and_wait(
            key, lambda until: _build_exact_sampler(model, vocab, config, max_len, seed, until, budget), deadline)
        if entry is None:
            raise OutOfTime
    if entry is None:
        if not budget.start_build(None if deadline is None else max(0.0, deadline - now())):
            raise OutOfTime  # every builder stayed busy until the deadline
        # the caller waits for this build, so its own deadline bounds it (`build_seconds` bounds the builds
        # that outlive their request); `OutOfTime` passes up, and a later request may build them
        until = None if deadline is None else budget.clock() + deadline - now()  # on the budget's clock
        try:
            entry = _build_exact_sampler(model, vocab, config, max_len, seed, until, budget)
        except NotAvailable as why:
            entry = why
        finally:
            budget.end_build()
        if cache is not None:
            cache.put(key, entry)
    elif isinstance(entry, ExactSampler):
        entry = copy.copy(entry)  # the tables are shared and read-only; the generator is this request's
        entry.generator = torch.Generator().manual_seed(seed)
    if isinstance(entry, NotAvailable):
        # a fresh exception each time: raising the cached one again would chain every raise's traceback onto it,
        # keeping each request's frames alive (a server leaked about 15 KB per request that way)
        raise NotAvailable(*entry.args)
    return entry


def _build_exact_sampler(model: CharModel, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
                         deadline: float | None = None, budget: TableBudget | None = None) -> ExactSampler:
    """The exact sampler for this model and these constraints (`NotAvailable` says why there is none;
    `OutOfTime` if `deadline`, on the budget's clock, passes while its tables are built)."""
    budget = budget if budget is not None else TABLES
    chain = markov_chain(model, vocab.size, config)
    if chain is None:
        raise NotAvailable(f"a {model.model_type} model is not a finite Markov chain with at most "
                        f"{MAX_ENUMERATED_CONTEXTS:,} contexts")
    automaton = build_automaton(vocab, config)
    if automaton is None:
        raise NotAvailable(f"the constraints need more than {MAX_AUTOMATON_STATES:,} automaton states")
    return ExactSampler(chain, automaton, vocab, config.starts_with, max(config.min_len or 0, 1), max_len, seed,
                        deadline, max_bytes=budget.table_bytes, clock=budget.clock)


