"""Several trained models as one: their predictions combined with weights fitted on validation.

Two ways to combine K models' next-character distributions p_1..p_K:

- "mixture" (linear interpolation, Jelinek & Mercer 1980; the ensembles of Lakshminarayanan et
  al. 2017): P(c | prefix) = Σ_k π_k · p_k(c | prefix), with π on the simplex. The weights
  maximise the validation likelihood; that log-likelihood is concave in π, and expectation
  maximisation (Dempster et al. 1977) climbs to its maximum using only each model's
  probability of the true next character.
- "product" (log-linear, a product of experts, Hinton 2002, as namesmith.models.ngram_mix):
  log P(c | prefix) = Σ_k w_k · log p_k(c | prefix) - log Z(prefix), with free weights; the
  negative log-likelihood is convex in w, and L-BFGS finds its minimum.

Models trained differently (another seed, another architecture) make different mistakes, so
their combination predicts held-out names better than any of them: data-limited language
modelling gains most from ensembles (Kim et al. 2025, "Pre-training under infinite compute").

The product is the default. On names.txt (benchmarks/bench_ensemble.py; two LSTMs, a GRU and the
order-6 n-gram, validation NLL 1.9265, 1.9732, 1.9355 and 1.9704, the networks trained for 2 to 4
minutes each with --time-budget on a busy 2-core machine) the product of all four reaches
validation 1.8915 (test 1.8930) against the mixture's 1.8948 (1.8978); with the n-gram in a pair
the product wins by 0.004 to 0.006, between two networks the rules are within 0.001 of each other.

A registered wrapper type ("ensemble"), built from trained model directories by
`NameModel.ensemble` or `namesmith ensemble -m A -m B ... --out DIR`. Saved with a nested config,
{"members": [{"model_type": ..., "model": its config}, ...], "weights": [...], "combine": ...},
and each member's tensors under "members.<i>.". Any model type can be a member, an n-gram mix
included; sampling carries every member's state (a tuple of them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from namesmith.core.config import COMBINES
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.models import model_class
from namesmith.models.base import CharModel, Shapes, Sizes, State, count_numbered, under
from namesmith.models.nll import position_log_probs

log = logging.getLogger("namesmith")


@dataclass(frozen=True)
class EnsembleConfig:
    """Each member's type and config, the weights, and how predictions are combined."""

    members: tuple[dict[str, Any], ...]  # {"model_type": ..., "model": config dict}
    weights: tuple[float, ...]
    combine: str = "product"


def check_weights(weights: Sequence[float], n_members: int, combine: str) -> None:
    """ConfigError unless the weights fit the members and the combination rule."""
    if combine not in COMBINES:
        raise ConfigError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}", field="combine")
    if len(weights) != n_members or not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"weights must be {n_members} finite numbers, got {list(weights)}", field="weights")
    if combine == "mixture" and (min(weights) < 0 or not math.isclose(sum(weights), 1.0, abs_tol=1e-4)):
        raise ConfigError(f"mixture weights must be non-negative and sum to 1, got {list(weights)}", field="weights")


class Ensemble(CharModel):
    """Members' next-token distributions combined (see the module docstring); outputs log-probabilities."""

    model_type: ClassVar[str] = "ensemble"
    config_class: ClassVar[type] = EnsembleConfig
    wrapper: ClassVar[bool] = True

    def __init__(self, members: Sequence[CharModel], weights: Sequence[float], combine: str = "product"):
        if not members or len({m.vocab_size for m in members}) != 1:
            raise ConfigError("an ensemble needs one or more models of one vocabulary", field="models")
        weights = [float(w) for w in weights]
        check_weights(weights, len(members), combine)
        config = EnsembleConfig(tuple({"model_type": m.model_type, "model": m.config_dict()} for m in members),
                                tuple(weights), combine)
        super().__init__(members[0].vocab_size, config)
        self.members = nn.ModuleList(members)
        self.combine = combine
        # what combine_logits adds or multiplies: log π for a mixture (log 0 = -inf leaves a member
        # out), w for a product; the config keeps the weights exactly
        values = torch.tensor(weights, dtype=torch.float64)
        self.register_buffer("member_weights", (values.log() if combine == "mixture" else values).float())

    @property
    def context_size(self) -> int | None:
        sizes = [m.context_size for m in self.members]
        return None if any(s is None for s in sizes) else max(sizes)

    @property
    def max_length(self) -> int | None:
        limits = [m.max_length for m in self.members if m.max_length is not None]
        return min(limits) if limits else None

    def combine_logits(self, member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised log-probabilities (..., V) of the combination of the members' logits (..., V)."""
        if self.combine == "mixture":
            terms = [F.log_softmax(logits.float(), -1) + w for logits, w in zip(member_logits, self.member_weights)]
            return torch.stack(terms).logsumexp(0)
        total = torch.zeros_like(member_logits[0], dtype=torch.float32)
        for logits, w in zip(member_logits, self.config.weights):
            if w != 0.0:  # 0 · log 0 would be nan where a count model rules a token out
                total = total + w * F.log_softmax(logits.float(), -1)
        return F.log_softmax(total, -1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.combine_logits([m(idx) for m in self.members])

    def init_state(self, batch_size: int) -> State:
        return tuple(m.init_state(batch_size) for m in self.members)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        logits, states = [], []
        for member, member_state in zip(self.members, state):
            member_logits, member_state = member.step(member_state, token)
            logits.append(member_logits)
            states.append(member_state)
        return self.combine_logits(logits), tuple(states)

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return tuple(m.select_state(s, rows) for m, s in zip(self.members, state))

    # --- saving -----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {"members": [{"model_type": m.model_type, "model": m.config_dict()} for m in self.members],
                "weights": list(self.config.weights), "combine": self.combine}

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        members = config["members"]
        yield "members", len(members), count_numbered(shapes, "members.", ".")
        if len(members) == count_numbered(shapes, "members.", "."):  # else the mismatch above is refused first
            for i, member in enumerate(members):
                for size, declared, held in model_class(member["model_type"]).declared_sizes(
                        vocab_size, member["model"], under(shapes, f"members.{i}.")):
                    yield f"member {i}'s {size}", declared, held

    @classmethod
    def from_config_dict(cls, vocab_size: int, config: dict[str, Any]) -> Ensemble:
        """The ensemble as saved by `config_dict` (the members' weights are loaded separately)."""
        try:
            members = [model_class(m["model_type"]).from_config_dict(vocab_size, m["model"]) for m in config["members"]]
            return cls(members, [float(w) for w in config["weights"]], config.get("combine", "product"))
        except (TypeError, KeyError, ValueError, ConfigError) as e:
            raise CheckpointError(f"malformed ensemble model config: {e}") from None

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"members.{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.weights().items()}

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        prefixes = [f"members.{i}." for i in range(len(self.members))]
        stray = sorted(k for k in tensors if not k.startswith(tuple(prefixes)))
        if stray:
            raise CheckpointError(f"weights do not match the ensemble: unexpected {stray[:5]}")
        for member, prefix in zip(self.members, prefixes):
            member.load_weights({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


# --- fitting the weights ------------------------------------------------------------------------
def fit_mixture_weights(target_log_probs: torch.Tensor, max_iter: int = 1000, tol: float = 1e-10) -> list[float]:
    """π maximising Σ_n log Σ_k π_k p_k(y_n), from (N, K) log p_k(y_n), by EM.

    E-step: each position's responsibilities r_nk ∝ π_k p_k(y_n); M-step: π_k = mean_n r_nk. The
    objective is concave in π, so EM's monotone climb ends at the maximum.
    """
    logp = target_log_probs.double().clamp_min(-1e4)  # a target every member rules out: no nan
    K = logp.size(1)
    log_pi = torch.full((K,), -math.log(K), dtype=torch.float64)
    previous = -math.inf
    for _ in range(max_iter):
        joint = logp + log_pi  # (N, K)
        per_position = joint.logsumexp(1, keepdim=True)
        log_likelihood = per_position.mean().item()
        log_pi = (joint - per_position).logsumexp(0) - math.log(len(logp))
        if log_likelihood - previous < tol:
            break
        previous = log_likelihood
    pi = log_pi.exp()
    return (pi / pi.sum()).tolist()


def fit_product_weights(log_probs: Sequence[torch.Tensor], targets: torch.Tensor) -> list[float]:
    """w minimising the NLL of `targets` (N,) under log_softmax(Σ_k w_k log p_k), from (N, V) each.

    Convex in w (a log-sum-exp of linear functions minus a linear one): L-BFGS finds the minimum,
    starting from the geometric mean (every w_k = 1/K).
    """
    stacked = torch.stack([lp.double().clamp_min(-1e4) for lp in log_probs])  # (K, N, V); log 0 → -1e4
    K = stacked.size(0)
    weights = torch.full((K,), 1.0 / K, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        mixed = F.log_softmax(torch.einsum("k,knv->nv", weights, stacked), -1)
        loss = F.nll_loss(mixed, targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().tolist()


def fit_ensemble_weights(members: Sequence[CharModel], x: torch.Tensor, y: torch.Tensor,
                         combine: str = "product") -> list[float]:
    """The weights of `members` combined by `combine`, fitted on `encode_words` tensors (x, y)."""
    log_probs, targets = zip(*(position_log_probs(m, x, y) for m in members))
    targets = targets[0]
    if combine == "mixture":
        return fit_mixture_weights(torch.stack([lp.gather(1, targets[:, None])[:, 0] for lp in log_probs], 1))
    return fit_product_weights(log_probs, targets)


def build_ensemble(members: Sequence[CharModel], corpus: Any, combine: str = "product") -> Ensemble:
    """`members` (trained on `corpus`) combined, with weights fitted on its validation split.

    Without validation words every member gets the same weight (there is nothing to fit on).
    """
    if combine not in COMBINES:
        raise ConfigError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}", field="combine")
    x_val, y_val = corpus.tensors("val")
    if x_val.shape[0] == 0:
        log.warning("no validation words to fit the ensemble's weights on: every model weighs the same")
        weights = [1.0 / len(members)] * len(members)
    else:
        weights = fit_ensemble_weights(members, x_val, y_val, combine)
    log.info(f"ensemble ({combine}) weights: {', '.join(f'{w:.3f}' for w in weights)}")
    return Ensemble(members, weights, combine)
