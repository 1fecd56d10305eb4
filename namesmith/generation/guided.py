"""Guided constrained sampling for any model: the n-gram's exact backward messages as a twist.

A network's next-character distribution depends on the whole prefix, so constraints such as
`ends_with="lyn"` cannot be conditioned on exactly as for a finite chain (namesmith.generation.exact);
rejection sampling keeps about 1 draw in 70 for that one. But a Kneser-Ney n-gram of the same
names is a finite chain, and its backward messages β(prefix) — the probability, under the
n-gram, that a name with this prefix ends up satisfying every constraint — are computed exactly
by `namesmith.generation.exact.ExactSampler`. They say, at every step, which next characters lead
towards a valid name and how likely that is. This module draws each next character from the
network steered by them (twisted sequential importance sampling, as in Lew et al. 2023,
"Sequential Monte Carlo steering of large language models using probabilistic programs", and
Zhao et al. 2024, "Probabilistic inference in language models via twisted sequential Monte Carlo"):

    q_t(c | x) = p(c | x) · ψ(x c) / Z(x),    Z(x) = Σ_c p(c | x) · ψ(x c),

with ψ = β of the prefix (ψ = 1 for a finished valid name, 0 for an invalid one) and p the
network's sampling distribution (after temperature, top-k, top-p). Every such draw is valid, and
q_t(x) = p(x) / (β(start) · Π_t Z/ψ): the factor Π Z/ψ is computed step by step as the name is
drawn (it would be 1 if the n-gram agreed with the network).

The target is the network conditioned on the constraints, π(x) ∝ p(x)·[x valid]. To be exact
whatever the n-gram gets wrong, `GUIDED_SHARE` of the particles come from q_t and the rest from
the network alone (a defensive mixture, Hesterberg 1995): the importance weight of a valid name,
W = p(x) / (share · q_t(x) + (1 - share) · p(x)), is then at most 1 / (1 - share), so no valid
name the twist neglects is out of reach. Particles are kept with probability W / B, B the largest
weight seen so far by this sampler (rejection sampling; exact once B has reached the largest
weight, and the bias before that is confined to the rare "records" heavier than every earlier
draw). tests/generation/test_guided.py compares the kept names with rejection sampling and with the exact
conditional distribution by chi-square tests (N = 20,000), and checks that the same test catches
the twisted proposal kept without this correction. The twist's chain floors every probability at
TWIST_FLOOR / V (`FlooredChain`), since an n-gram can give a continuation probability 0 that the
network does not.

What this buys is bounded by the twist: the acceptance is E_q[W] / B = P(valid) / B, and B is set
by the valid names the n-gram finds least likely relative to the network (rejection's acceptance
is P(valid)). On names.txt with `--ends-with lyn` (P(valid) about 1.35%; benchmarks/bench_generate.py,
5,000 names), the default Transformer with its 6-gram kept 3.2% of its particles (7.0% of its
unconstrained rate; 10.5% and 15% when stopped after 400 s, a worse network that the n-gram
predicts better), the default LSTM with its 6-gram 3.9% (6.8%); the heaviest names are unusual
ones ("erwlyn", "japplyn") that the network finds far likelier than the n-gram, and B still grows
with more draws. Resampling the particles instead (sampling importance
resampling: half the effective sample size of each batch, 55-58% of the LSTM's particles) would
keep about 29% of them, but repeats a heavy particle's name many times within a batch: on
tests/generation/test_guided.py's network it failed the chi-square test against the exact distribution
(p = 5e-8) in 1 of 8 seeds, so it was not kept; neither was a mixture of an order-6 and an order-3
twist (its largest weights are no smaller). For constraints that are not rare (`--starts-with ma
--ends-with a --min-len 6`: 16%) rejection is faster: `method="auto"` guides only when the n-gram
gives valid names less than 5% probability (namesmith.generation.generate.GUIDE_BELOW), and only while B stays
below 1 / GUIDED_COST (`_GuidedWhileFaster`). The statistics report the particles drawn and Kish's
effective sample size, (Σ W)² / Σ W², of their weights.

The twist comes from an n-gram: the one inside an n-gram mix or an ensemble (`find_twist`), else
one counted on the training words (`fit_twist`). Names that share a prefix share their network
state, their product state and their weight (the model sampler's trie, namesmith.generation.sample).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from namesmith.core.clock import now
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.ngram_keys import max_order
from namesmith.data.words import Corpus
from namesmith.generation.config import GenerateConfig
from namesmith.generation.draws import Batch, finish_batch, token_dtype
from namesmith.generation.exact import ExactSampler, exact_sampler
from namesmith.generation.exact_cache import ExactCache
from namesmith.generation.sample import ModelSampler, draw
from namesmith.models.base import CharModel
from namesmith.models.conditional_counts import ConditionalCounts
from namesmith.models.ngram import NGram, NGramConfig

TWIST_ORDER = 6  # the n-gram counted for a twist when the model holds none
GUIDED_SHARE = 0.9  # of the particles drawn from the twisted proposal; the rest from the network alone
TWIST_FLOOR = 0.01  # the twist's chain draws a uniform token this often: no token the network may draw is ruled out


def find_twist(model: CharModel) -> NGram | None:
    """An n-gram held by the model (an n-gram mix's, or an ensemble member's; of a conditional n-gram,
    its pooled component, the model of every name), else None."""
    if isinstance(model, NGram):
        return model
    if isinstance(model, ConditionalCounts) and model.component_type == "ngram":
        return find_twist(model.component(0))
    if getattr(model, "ngram", None) is not None:
        return find_twist(model.ngram)
    for member in getattr(model, "members", ()):
        found = find_twist(member)
        if found is not None:
            return found
    return None


def fit_twist(corpus: Corpus, order: int = TWIST_ORDER) -> NGram:
    """An n-gram counted on the corpus' training words (a second or so for names.txt); of a lower order where
    the vocabulary is too large for `order` (namesmith.data.ngram_keys.max_order)."""
    ngram = NGram(corpus.vocab.size, NGramConfig(order=min(order, max_order(corpus.vocab.size))))
    ngram.fit(corpus, None)
    return ngram.eval()


class FlooredChain:
    """An n-gram as the finite chain namesmith.generation.exact conditions on, every next-token probability
    at least TWIST_FLOOR / V. A twist must not rule out what the network may draw (ψ = 0 where the
    network goes would hide those names from the proposal), and a Kneser-Ney n-gram with a discount
    of 0 at some order gives unseen continuations probability 0."""

    model_type = "ngram"
    calibration = None  # a twist steers by the n-gram's own distribution (namesmith.generation.calibration)

    def __init__(self, ngram: NGram, floor: float = TWIST_FLOOR):
        self.ngram, self.floor = ngram, floor
        self.context_size = ngram.context_size

    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        log_probs, next_state, start = self.ngram.markov_chain()
        probs = log_probs.float().softmax(-1)
        return ((1 - self.floor) * probs + self.floor / probs.size(1)).log(), next_state, start


class Guide:
    """What `namesmith.generation.generate.iter_generate(..., guide=)` calls to steer `model`: a GuidedSampler
    whose twist is the n-gram `twist_source()` returns, asked for only when needed (it raises
    `NotAvailable` when there is none)."""

    def __init__(self, model: CharModel, twist_source: Callable[[], NGram], cache: ExactCache | None = None):
        self.model, self.twist_source = model, twist_source
        self.cache = cache  # the twists' exact tables, kept for later calls (the n-gram must not change)

    def __call__(self, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
                 deadline: float | None = None) -> GuidedSampler:
        ngram = self.twist_source()
        # the twist keeps every character the network may draw: temperature only, no top-k or top-p
        twist_config = dataclasses.replace(config, top_k=None, top_p=None)
        twist = exact_sampler(FlooredChain(ngram), vocab, twist_config, max_len, seed, deadline,  # type: ignore[arg-type]
                              self.cache)
        return GuidedSampler(self.model, twist, vocab, config.starts_with, max_len, seed, **config.decoding)


class GuidedSampler(ModelSampler):
    """The model sampler steered by the backward messages of `twist` (an ExactSampler of an n-gram
    under the same constraints and length limits), importance weights corrected by rejection."""

    def __init__(self, model: CharModel, twist: ExactSampler, vocab: Vocab, prefix: str, max_length: int, seed: int,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 share: float = GUIDED_SHARE):
        super().__init__(model, vocab, prefix, max_length, seed, temperature, top_k, top_p)
        assert twist.max_len == max_length and twist.prefix == prefix, "the twist is for these limits"
        assert 0 < share < 1, "a share of the particles is drawn from the network alone"
        self.twist, self.share = twist, share
        self.cpu_generator = torch.Generator().manual_seed(seed)  # the twist's tables live on the CPU
        self.log_bound = -math.inf  # the largest log-weight seen so far

    def _steer(self, probs: torch.Tensor, z: torch.Tensor, t: int) -> tuple[torch.Tensor, ...]:
        """At t characters after the prefix, per slot: the network's and the twisted proposal's CDFs
        (slots, V), the log-weight increment log Z(x) - log ψ(x) (float64), and whether the name may
        end here."""
        tw = self.twist
        beta_next = tw.beta[t + 1]  # log β_{t+1} - log_scale[t+1], (N + 1,) with the -inf sentinel last
        # the slots of finished names and invalid prefixes are in the sentinel state N: it leads to itself, never ends
        psi = beta_next.index_select(0, tw.steps_from(z).view(-1)).view(len(z), -1)  # (slots, V)
        can_end = torch.isfinite(tw.ends_from(z)) & (tw.p0 + t >= tw.min_len)
        psi[:, BOUNDARY] = torch.where(can_end, -tw.log_scale[t + 1], -math.inf).float()  # ending validly: ψ = 1
        probs = probs / probs.sum(1, keepdim=True)
        log_w = probs.log() + psi  # log p(c | x) + log ψ(x c) - log_scale[t+1]
        log_z = torch.logsumexp(log_w.double(), 1) + tw.log_scale[t + 1]
        log_psi = tw.beta[t].index_select(0, z).double() + tw.log_scale[t]
        top = log_w.amax(1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        return probs.cumsum(1), (log_w - top).exp_().cumsum(1), log_z - log_psi, can_end

    @torch.inference_mode()
    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` particles; return the names kept (None: the deadline passed first)."""
        device, tw = self.model.device, self.twist
        room = self.max_length - tw.p0
        tokens = np.zeros((batch, max(room, 0)), dtype=token_dtype(self.vocab.size))
        lengths = np.full(batch, -1, dtype=np.int64)  # stays -1 for a plain draw that does not end in time
        log_w_twisted = torch.full((batch,), -math.inf, dtype=torch.float64)  # log Π Z/ψ of the valid names
        rows = torch.arange(batch)  # the output row of each particle still going
        slot = torch.zeros(batch, dtype=torch.long)  # its state slot
        plain = torch.rand(batch, generator=self.cpu_generator) >= self.share  # drawn from the network alone
        state, probs = self.first(self.vocab.encode(self.prefix))
        z = torch.tensor([tw.z0])  # each slot's (constraint, n-gram) product state
        slot_log_weight = torch.zeros(1, dtype=torch.float64)
        for t in range(room + 1):
            if deadline is not None and now() > deadline:
                return None
            cdf_plain, cdf_twisted, increment, can_end = self._steer(probs.cpu(), z, t)
            slot_log_weight = slot_log_weight + increment
            is_plain = plain[rows]
            cdf = torch.where(is_plain.unsqueeze(1), cdf_plain.index_select(0, slot), cdf_twisted.index_select(0, slot))
            nxt = draw(cdf, self.cpu_generator)
            # a prefix from which the network (after top-k/top-p) reaches no valid name ends here, invalid
            nxt[~is_plain & (slot_log_weight.index_select(0, slot) == -math.inf)] = BOUNDARY
            ended = nxt == BOUNDARY
            lengths[rows[ended].numpy()] = t
            valid = ended & can_end[slot]
            log_w_twisted[rows[valid]] = slot_log_weight[slot[valid]]
            going = (~ended).nonzero().squeeze(1)
            if t == room or len(going) == 0:
                break
            rows, nxt, slot = rows[going], nxt[going], slot[going]
            tokens[rows.numpy(), t] = nxt.numpy()
            state, probs, new_slot, origin, fed = self.advance(state, slot.to(device), nxt.to(device), len(z))
            origin, fed, slot = origin.cpu(), fed.cpu(), new_slot.cpu()
            z = tw.steps_from(z[origin]).gather(1, fed.long().unsqueeze(1)).squeeze(1)  # fed the boundary: the sentinel
            slot_log_weight = slot_log_weight[origin]
        return self._correct(tokens, lengths, self._log_weights(log_w_twisted))

    def _log_weights(self, log_w_twisted: torch.Tensor) -> torch.Tensor:
        """log W = log p(x) - log q(x) of each particle, q = share · twisted + (1 - share) · network
        (-inf for an invalid name). The twisted proposal's q_t(x) = p(x) / (β(start) · Π Z/ψ): the ψ's
        of the prefixes cancel along the name but the first, β(start), and the last, 1."""
        log_ratio = -(log_w_twisted + self.twist.log_p_valid)  # log q_t(x) / p(x); +inf for invalid names
        mixed = torch.logaddexp(math.log(self.share) + log_ratio, torch.tensor(math.log1p(-self.share)))
        return torch.where(torch.isfinite(log_w_twisted), -mixed, -math.inf)

    def _correct(self, tokens: np.ndarray, lengths: np.ndarray, log_weights: torch.Tensor) -> Batch:
        """Keep each particle with probability W / (the largest weight seen so far)."""
        self.log_bound = max(self.log_bound, float(log_weights.max()))
        weights = (log_weights - self.log_bound).exp() if self.log_bound > -math.inf else torch.zeros_like(log_weights)
        total = float(weights.sum())
        ess = total**2 / float((weights**2).sum()) if total > 0 else 0.0
        keep = (torch.rand(len(weights), generator=self.cpu_generator, dtype=torch.float64) < weights).numpy()
        names = finish_batch(tokens[keep], lengths[keep], self.vocab, self.prefix).names
        return Batch(names, keep, rejected=~keep & (lengths >= 0), effective_sample_size=ess)
