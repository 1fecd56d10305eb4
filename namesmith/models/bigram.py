"""Bigram models: the next character depends only on the previous one.

Two ways to the same table, as in part 1 of the makemore lecture series:

- `BigramCounts`: count every (previous, next) pair in the training words, add k to each count
  (add-k / Laplace smoothing) and normalise the rows. Closed form, instant.
- `BigramLinear`: the seed notebook's single linear layer. W (V×V) is applied to one-hot
  characters and trained by gradient descent on the negative log-likelihood. Because the input
  is one-hot, the loss and its gradient depend on the data only through the pair counts N:

      loss = -Σ N ∘ log softmax(W) / n            grad = (softmax(W) ∘ rowsum(N) - N) / n

  so a full-batch epoch costs O(V²) instead of O(pairs × V). That is the default `full-batch`
  mode; `one-hot` runs the seed's literal formulation and must follow the same trajectory.
  With enough epochs softmax(W) approaches the count model with k=0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from namesmith.core.history import TrainHistory
from namesmith.core.vocab import BOUNDARY
from namesmith.data.pair_counts import count_pairs
from namesmith.models.base import CharModel, Shapes, Sizes, State, check_config, dim

LOG_EVERY = 10  # full-batch epochs between loss-curve points


class BigramTable(CharModel):
    """Shared by both bigram models: logits come from one (V, V) table indexed by the last token."""

    streamable: ClassVar[bool] = True
    table_name: ClassVar[str]  # the saved (V, V) table

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        cls.config_class(**config)
        for axis in (0, 1):
            yield "vocabulary size", vocab_size, dim(shapes, cls.table_name, axis)

    @property
    def context_size(self) -> int:
        return 1

    def log_probs(self) -> torch.Tensor:
        """(V, V) table of log P(next | previous)."""
        raise NotImplementedError

    def transition_probs(self) -> torch.Tensor:
        """(V, V) table of P(next | previous); each row sums to 1."""
        return self.log_probs().exp()

    def transition_table(self) -> torch.Tensor:
        return self.transition_probs()

    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """State = the last token."""
        V = self.vocab_size
        return self.transition_probs().clamp_min(0).log(), torch.arange(V).expand(V, V), BOUNDARY

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.log_probs()[idx]  # (B, T, V)

    def init_state(self, batch_size: int) -> State:
        return None  # a bigram needs no memory beyond the token it is fed

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        return self.log_probs()[token], None

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return None


@dataclass(frozen=True)
class BigramCountsConfig:
    smoothing: float = 1.0  # k of add-k smoothing; 0 gives the maximum-likelihood table

    def __post_init__(self) -> None:
        check_config(self.smoothing >= 0, f"smoothing must not be negative, got {self.smoothing}")


class BigramCounts(BigramTable):
    """Counted bigram table with add-k smoothing: P(b|a) = (N[a,b] + k) / Σ_c (N[a,c] + k)."""

    model_type: ClassVar[str] = "bigram-counts"
    config_class: ClassVar[type] = BigramCountsConfig
    table_name: ClassVar[str] = "pair_counts"
    counts_only: ClassVar[bool] = True

    def __init__(self, vocab_size: int, config: BigramCountsConfig | None = None):
        super().__init__(vocab_size, config or BigramCountsConfig())
        self.register_buffer("pair_counts", torch.zeros(vocab_size, vocab_size))

    def log_probs(self) -> torch.Tensor:
        counts = self.pair_counts + self.config.smoothing
        totals = counts.sum(1, keepdim=True)
        # A row never seen in training (k=0) has no estimate: make it uniform rather than 0/0.
        counts = torch.where(totals > 0, counts, torch.ones_like(counts))
        return (counts / counts.sum(1, keepdim=True)).log()

    def fit(self, corpus: Any, config: Any, callback: Any = None, *, resume: dict | None = None,
            on_checkpoint: Any = None) -> TrainHistory:
        start = time.perf_counter()
        x, y = corpus.tensors("train")
        self.fit_pair_counts(count_pairs(x, y, self.vocab_size), config, callback)
        return TrainHistory(steps=1, seconds=time.perf_counter() - start)

    def fit_pair_counts(self, pair_counts: Any, config: Any = None, callback: Any = None,
                        history: TrainHistory | None = None) -> int:
        """The counts are the model: store them (one step)."""
        self.pair_counts.copy_(torch.as_tensor(pair_counts).to(self.pair_counts))
        if callback:
            callback(1, 1, {})
        return 1


@dataclass(frozen=True)
class BigramConfig:
    init_seed: int = 0  # seed of the generator that draws the initial W ~ N(0, 1)


class BigramLinear(BigramTable):
    """The seed's model: logits = one_hot(previous) @ W, trained by gradient descent."""

    model_type: ClassVar[str] = "bigram"
    config_class: ClassVar[type] = BigramConfig
    table_name: ClassVar[str] = "W"
    # The seed's schedules: full batch decays 100 → 10 over 10,000 epochs; its per-example
    # study loops run 2 epochs at a constant rate (100 for the L1 loss, 1 for the NLL).
    mode_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "full-batch": {"max_steps": 10_000, "learning_rate": 100.0, "learning_rate_end": 10.0},
        "one-hot": {"max_steps": 10_000, "learning_rate": 100.0, "learning_rate_end": 10.0},
        "per-example-nll": {"max_steps": 2, "learning_rate": 1.0, "learning_rate_end": 1.0},
        "per-example-l1": {"max_steps": 2, "learning_rate": 100.0, "learning_rate_end": 100.0},
    }
    default_train_config: ClassVar[dict[str, Any]] = {**mode_defaults["full-batch"], "weight_decay": 0.0}

    def __init__(self, vocab_size: int, config: BigramConfig | None = None):
        super().__init__(vocab_size, config or BigramConfig())
        generator = torch.Generator().manual_seed(self.config.init_seed)
        self.W = torch.nn.Parameter(torch.randn(vocab_size, vocab_size, generator=generator))

    def log_probs(self) -> torch.Tensor:
        return F.log_softmax(self.W, dim=1)

    @classmethod
    def train_defaults(cls, config: Any) -> dict[str, Any]:
        return {**super().train_defaults(config), **cls.mode_defaults[config.mode]}

    def fit(self, corpus: Any, config: Any, callback: Any = None, *, resume: dict | None = None,
            on_checkpoint: Any = None) -> TrainHistory:
        x, y = corpus.tensors("train")
        history = TrainHistory.from_dict(resume["meta"]["history"]) if resume else TrainHistory()
        history.stop_reason = "finished"  # until this run is interrupted in turn
        first_epoch = resume["meta"]["epoch"] if resume else 0
        if resume:
            self.load_weights({"W": resume["tensors"]["W"]})
        # full-batch descent runs in float64: resuming from the float32 W would not be exact
        self._w64 = resume["tensors"].get("W64") if resume else None
        run = {"full-batch": self._fit_counts, "one-hot": self._fit_one_hot,
               "per-example-nll": self._fit_per_example, "per-example-l1": self._fit_per_example}
        start = time.perf_counter() - history.seconds
        epoch = run[config.mode](x, y, config, callback, history, first_epoch)
        history.seconds = time.perf_counter() - start
        history.steps = epoch
        if epoch < config.max_steps:
            history.stop_reason = "interrupted"
            if on_checkpoint:
                tensors = {"W": self.W.detach().cpu().clone()}
                if self._w64 is not None:
                    tensors["W64"] = self._w64
                on_checkpoint({"tensors": tensors, "meta": {"epoch": epoch, "history": history.to_dict()}})
        return history

    @staticmethod
    def _learning_rate(config: Any, epoch: int) -> float:
        """The seed's linear decay from learning_rate to learning_rate_end over max_steps."""
        lr, lr_end = config.learning_rate, config.learning_rate_end
        return lr - (lr - lr_end) * epoch / config.max_steps

    def _fit_counts(self, x, y, config, callback, history, epoch) -> int:  # noqa: ANN001
        """Full-batch gradient descent from the pair counts alone: O(V²) per epoch.

        Runs in float64 NumPy on preallocated buffers: for a 27×27 table the per-call overhead
        of torch ops would dominate. Same schedule and same updates as `_fit_one_hot`.
        """
        return self.fit_pair_counts(count_pairs(x, y, self.vocab_size).double().numpy(), config, callback,
                                    history, epoch)

    def fit_pair_counts(self, pair_counts: np.ndarray, config: Any, callback: Any = None,
                        history: TrainHistory | None = None, epoch: int = 0) -> int:
        """Gradient descent on the loss of the pair counts (V, V); returns the epoch reached.

        Streaming training (namesmith.data.counting) calls this with counts of a file too large to load.
        """
        history = history if history is not None else TrainHistory()
        counts = np.asarray(pair_counts, dtype=np.float64)
        n = counts.sum()
        row_totals = counts.sum(1, keepdims=True)  # (V, 1)
        start = getattr(self, "_w64", None)  # the exact float64 W of an interrupted run, when resuming
        exact = (start is not None and start.shape == self.W.shape
                 and torch.equal(start.to(self.W.dtype), self.W.detach().cpu()))  # not stale
        start = start if exact else self.W
        W = start.detach().cpu().double().numpy().copy()  # (V, V)
        E = np.empty_like(W)  # exp(W - row max), then the gradient × n
        top, norm = np.empty_like(row_totals), np.empty_like(row_totals)  # (V, 1)
        l2 = config.weight_decay
        while epoch < config.max_steps:
            lr = self._learning_rate(config, epoch)
            np.maximum.reduce(W, axis=1, keepdims=True, out=top)  # ufunc.reduce: less overhead than np.max
            np.subtract(W, top, out=E)
            np.exp(E, out=E)
            np.add.reduce(E, axis=1, keepdims=True, out=norm)
            if epoch % LOG_EVERY == 0 or epoch == config.max_steps - 1:
                log_probs = W - top - np.log(norm)
                loss = float(-(counts * log_probs).sum() / n + (l2 * (W**2).mean() if l2 else 0.0))
                history.train_loss.append((epoch, loss))
                stop = bool(callback and callback(epoch + 1, config.max_steps, {"loss": loss, "lr": lr}))
            else:
                stop = False
            np.divide(row_totals, norm, out=norm)
            np.multiply(E, norm, out=E)  # expected counts softmax(W) ∘ rowsum(N)
            E -= counts  # n × gradient of the mean NLL
            if l2:
                E += (2 * l2 * n / W.size) * W
            E *= lr / n
            W -= E
            epoch += 1
            if stop:
                break
        with torch.no_grad():
            self.W.copy_(torch.from_numpy(W).to(self.W))
        self._w64 = torch.from_numpy(W)  # saved with a resumable checkpoint (see fit)
        return epoch

    def _fit_one_hot(self, x, y, config, callback, history, epoch) -> int:  # noqa: ANN001
        """The seed's literal full-batch loop: one_hot(xs) @ W over every pair, autograd."""
        mask = y >= 0
        xs, ys = x[mask].to(self.device), y[mask].to(self.device)
        xenc = F.one_hot(xs, num_classes=self.vocab_size).to(self.W.dtype)  # (pairs, V)
        rows = torch.arange(len(ys), device=self.device)
        while epoch < config.max_steps:
            lr = self._learning_rate(config, epoch)
            logits = xenc @ self.W
            probs = logits.softmax(dim=1)
            loss = -probs[rows, ys].log().mean()
            if config.weight_decay:
                loss = loss + config.weight_decay * (self.W**2).mean()
            stop = self._descend(loss, lr, config, callback, history, epoch)
            epoch += 1
            if stop:
                break
        return epoch

    def _descend(self, loss, lr, config, callback, history, epoch) -> bool:  # noqa: ANN001
        """The seed's update, W -= lr * dW, recorded as epoch `epoch`; True if the callback asks to stop."""
        self.W.grad = None
        loss.backward()
        with torch.no_grad():
            self.W -= lr * self.W.grad
        history.train_loss.append((epoch, loss.item()))
        return bool(callback and callback(epoch + 1, config.max_steps, {"loss": loss.item(), "lr": lr}))

    def _fit_per_example(self, x, y, config, callback, history, epoch) -> int:  # noqa: ANN001
        """The seed's teaching loops: one example at a time, one update per epoch. For study only.

        `per-example-l1` is the naive loss, mean |probs - one_hot(target)|; `per-example-nll`
        is -log probs[target]. Both accumulate over every example before one gradient step.
        """
        mask = y >= 0
        xs, ys = x[mask], y[mask]
        if config.subset:
            xs, ys = xs[: config.subset], ys[: config.subset]
        xenc = F.one_hot(xs, num_classes=self.vocab_size).to(self.W)
        yenc = F.one_hot(ys, num_classes=self.vocab_size).to(self.W)
        naive = config.mode == "per-example-l1"
        while epoch < config.max_steps:
            lr = self._learning_rate(config, epoch)
            loss = torch.zeros((), device=self.device)
            for i in range(len(ys)):
                counts = (xenc[i] @ self.W).exp()
                probs = counts / counts.sum()
                loss = loss + ((probs - yenc[i]).abs().mean() if naive else -probs[ys[i]].log())
            loss = loss / len(ys)
            stop = self._descend(loss, lr, config, callback, history, epoch)
            epoch += 1
            if stop:
                break
        return epoch
