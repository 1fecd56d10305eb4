"""The one model interface: given the characters so far, what are the logits of the next one?

Every model, from bigram counts to the Transformer, answers that question in two forms:

- `forward(idx)`: for token ids (B, T) that start with the boundary token, the logits (B, T, V)
  of the next token at every position. Training, evaluation and scoring use this.
- `step(state, token)`: feed one token per row, get the logits (B, V) of the next one. Sampling
  uses this, so a model can carry a recurrent state or a key/value cache instead of re-reading
  the prefix. The default implementation keeps the prefix (cropped to `context_size`) as its
  state and calls `forward`, which is correct for every model and fast for short contexts.

Count models return log-probabilities as logits (-inf where the probability is 0).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from namesmith.core.config import TRAIN_DEFAULTS
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.vocab import BOUNDARY

State = Any
Shapes = dict[str, tuple[int, ...]]  # a weights file's tensor names and shapes (from its header: nothing loaded)
Sizes = Iterator[tuple[str, Any, Any]]  # (size, as declared, as the weights hold it): see `CharModel.declared_sizes`

# The training recipe every neural model starts from (see namesmith.training.trainer); each model
# overrides what differs: its step cap, patience and time budget at least.
NEURAL_TRAIN_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-3,
    "learning_rate_end": 1e-4,
    "warmup_steps": 100,
    "batch_size": 128,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "eval_every": 500,
    # words of about the same length together: less padding, same objective; each such batch pulls
    # the weights its own way, which the moving average of the weights evens out
    "batching": "by-length",
    "ema": 0.999,
    "ngram_mix": 6,  # see namesmith.models.ngram_mix: trained, then combined with an order-6 n-gram
}


class CharModel(nn.Module):
    """Base class of every namesmith model; subclasses set the class attributes below.

    The contract a model type declares, so that callers never probe it with getattr/isinstance:

    - `neural`: trained by the gradient trainer (namesmith.training.trainer, chosen by namesmith.training.train);
      such models can be combined with an n-gram (namesmith.models.ngram_mix). Other models fit
      themselves (`fit`): counting, or the seed bigram's own descent.
    - `counts_only`: fitted in closed form from counts; training options do not apply.
    - `wrapper`: built from other trained models (the n-gram mix), never trained by `--model`.
    - `make_config(overrides, corpus)`: the model's config from user options and the data.
    - `transition_table()`: the (V, V) table P(next | previous) of a first-order model, else None;
      `markov_chain()`: the model as a finite Markov chain over its own states, else None.
    - `streamable` and `fit_pair_counts(...)`: fitting from (V, V) pair counts alone (streamed training).
    - `labels` and `given(where)`: a conditional model's labels, and the plain model of some of them.
    """

    model_type: ClassVar[str]  # the name used by --model and in checkpoints
    config_class: ClassVar[type]  # dataclass of the model's hyperparameters
    # TrainConfig fields this model type uses when the user leaves them unset
    default_train_config: ClassVar[dict[str, Any]] = {}
    counts_only: ClassVar[bool] = False
    neural: ClassVar[bool] = False
    wrapper: ClassVar[bool] = False
    streamable: ClassVar[bool] = False  # has `fit_pair_counts`, so it can learn a streamed word list

    def __init__(self, vocab_size: int, config: Any):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = config

    @classmethod
    def make_config(cls, overrides: dict[str, Any], corpus: Any = None) -> Any:
        """The config dataclass from user options (may read the data, e.g. its longest word)."""
        return cls.config_class(**overrides)

    @property
    def context_size(self) -> int | None:
        """How many previous tokens the next-token distribution depends on (None: all of them)."""
        return None

    @property
    def max_length(self) -> int | None:
        """Longest sequence (boundary included) the model can read, if it has a limit."""
        return None

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the next token after each prefix idx[:, :t+1]."""
        raise NotImplementedError

    @classmethod
    def train_defaults(cls, config: Any) -> dict[str, Any]:
        """TrainConfig values for fields the user left unset (may depend on `config.mode`)."""
        return {**TRAIN_DEFAULTS, **cls.default_train_config}

    def fit(self, corpus: Any, config: Any, callback: Any = None, *, resume: dict | None = None,
            on_checkpoint: Any = None) -> Any:
        """Fit on the corpus' train split and return a `TrainHistory` (models that are not `neural`).

        `on_checkpoint(state)` receives resumable training state ({"tensors": ..., "meta": ...})
        now and then; `resume=state` continues from it.
        """
        raise NotImplementedError(f"{self.model_type} is trained by namesmith.training.trainer, not by itself")

    def fit_pair_counts(self, pair_counts: Any, config: Any, callback: Any = None, history: Any = None) -> int:
        """Fit from (V, V) pair counts alone; returns the steps run (models that only need them)."""
        raise NotImplementedError(f"{self.model_type} cannot be fitted from pair counts")

    def transition_table(self) -> torch.Tensor | None:
        """(V, V) P(next | previous) of a first-order model (rows sum to 1); None for other models."""
        return None

    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """The model as a finite Markov chain over the states it stores, if it is one (bigram models,
        the n-gram): next-token log-probabilities (S, V), the next state (S, V), and the state after
        the boundary that starts a name. None for other models (see namesmith.generation.exact)."""
        return None

    def sampling_rows(self) -> Any | None:
        """Next-token rows assembled in NumPy as sampling needs them (namesmith.generation.draws.RowSampler), for a
        model that samples that way (an adapted list's model: namesmith.models.sparse_rows); None for the others."""
        return None

    def chain_states(self) -> int | None:
        """S, the states of `markov_chain`, where the model knows it without building the chain (None: unknown),
        so that a chain too large to keep is never built for nothing (namesmith.generation.saved_tables)."""
        return None

    # --- conditions (namesmith.core.conditional) -----------------------------------------------------
    condition: Any = None  # a conditional model's `namesmith.core.conditional.Condition` (labels, values, priors)
    calibration: Any = None  # a `generation.calibration.Calibration`: its names tilted as a whole (None: as they are)
    # a conditional model's `namesmith.generation.calibration.LabelCalibrations`: the names of each label node tilted
    label_calibrations: Any = None

    @property
    def labels(self) -> dict[str, list[str]]:
        """The labels the model is conditioned on, each with its values; {} for a plain model."""
        return {} if self.condition is None else dict(self.condition.labels)

    def given(self, where: Any = None, guidance: float = 0.0) -> CharModel:
        """The plain model P(name | where) of a conditional model, guided by `guidance` (namesmith.core.conditional);
        a plain model is its own (where empty)."""
        if where:
            raise ConfigError(f"where: this {self.model_type} model is not conditioned on any label "
                              "(train one on a table with labels: condition=..., --condition LABEL)", field="where")
        return self

    # --- incremental generation -------------------------------------------------------------
    def init_state(self, batch_size: int) -> State:
        """The state before any token: an empty prefix."""
        return torch.empty(batch_size, 0, dtype=torch.long, device=self.device)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Feed tokens (B,), return next-token logits (B, V) and the new state."""
        prefix = torch.cat([state, token.view(-1, 1)], dim=1)
        keep = self.context_size if self.context_size is not None else self.max_length
        if keep is not None:
            prefix = prefix[:, -keep:]
        return self(prefix)[:, -1], prefix

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        """The state of the given rows only (finished names leave the batch)."""
        return state[rows]

    # --- saving -----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls, vocab_size: int, config: dict[str, Any]) -> CharModel:
        try:
            return cls(vocab_size, cls.config_class(**config))
        except TypeError as e:
            raise CheckpointError(f"model config does not fit {cls.model_type}: {e}") from None

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        """Every size the vocabulary and a saved config declare (vocabulary, layers, widths, order, components,
        labels, ...), each beside the value the saved tensors' shapes hold: (size, declared, held).

        namesmith.training.checkpoint compares them before any model is built, so an edited namesmith.json (n_layer set
        to 10^5, 20,000 more characters) is refused at once instead of allocating what it declares. Every
        registered model type says where its sizes live (tests/training/test_checkpoint_safety.py runs them all)."""
        raise NotImplementedError(f"{cls.model_type} does not say how its sizes show in its weights")

    def weights(self) -> dict[str, torch.Tensor]:
        """Tensors to save (safetensors: contiguous, unshared)."""
        return {k: v.detach().contiguous().cpu().clone() for k, v in self.state_dict().items()}

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load what `weights()` saved; shapes must match exactly."""
        expected = self.state_dict()
        if set(expected) != set(tensors):
            missing, extra = set(expected) - set(tensors), set(tensors) - set(expected)
            raise CheckpointError(f"weights do not match {self.model_type}: missing {sorted(missing)}, "
                                  f"unexpected {sorted(extra)}")
        for name, tensor in tensors.items():
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise CheckpointError(f"weight {name!r} has shape {tuple(tensor.shape)}, expected "
                                      f"{tuple(expected[name].shape)} (vocabulary or config mismatch)")
        self.load_state_dict(tensors)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, {self.config}"


class WindowModel(CharModel):
    """A model of the last `config.block_size` tokens only (MLP, WaveNet).

    Its sampling state is that window, (B, block_size), boundary tokens before the name starts;
    a subclass says how a window becomes the next-token logits (`window_logits`).
    """

    @property
    def context_size(self) -> int:
        return self.config.block_size

    def window_logits(self, window: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) of the token after the window (B, block_size)."""
        raise NotImplementedError

    def init_state(self, batch_size: int) -> State:
        return boundary_context(batch_size, self.config.block_size, self.device)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        window = torch.cat([state[:, 1:], token.view(-1, 1)], dim=1)  # (B, block_size)
        return self.window_logits(window), window


class DelegatingModel(CharModel):
    """A model around another one, `inner` (by default `self.model`): it reads as far back, and as long a
    sequence, as the model it holds (the conditional network, the n-gram mix, a network with labels fixed)."""

    @property
    def inner(self) -> CharModel:
        return self.model

    @property
    def context_size(self) -> int | None:
        return self.inner.context_size

    @property
    def max_length(self) -> int | None:
        return self.inner.max_length


def check_config(condition: bool, message: str, field: str | None = None) -> None:
    """Raise a ConfigError unless `condition` holds (for config dataclasses' __post_init__).

    The message starts with the parameter at fault (`order must be ...`); it is the error's field
    unless `field` says otherwise."""
    if not condition:
        raise ConfigError(message, field=field or message.split(" ", 1)[0].rstrip(":"))


def boundary_context(batch_size: int, length: int, device: torch.device) -> torch.Tensor:
    """A (B, length) block of boundary tokens: the context before a name starts."""
    return torch.full((batch_size, length), BOUNDARY, dtype=torch.long, device=device)


def context_windows(idx: torch.Tensor, K: int) -> torch.Tensor:
    """(B, T, K): the K tokens up to and including each position of idx (B, T), left-padded with the boundary:
    what a model of order K + 1 predicts the next token from."""
    padded = torch.cat([boundary_context(len(idx), max(K - 1, 0), idx.device), idx], 1)  # (B, T+K-1)
    return padded.unsqueeze(-1)[..., :0] if K == 0 else padded.unfold(1, K, 1)


def ngram_windows(x: torch.Tensor, y: torch.Tensor, order: int) -> torch.Tensor:
    """(M, order) every n-gram of `encode_words` tensors: order-1 boundary-padded context tokens, then the target."""
    mask = y >= 0
    return torch.cat([context_windows(x, order - 1), y.unsqueeze(-1)], -1)[mask]


def dim(shapes: Shapes, name: str, axis: int) -> int | None:
    """Size `axis` of the saved tensor `name` (None when there is no such tensor or axis)."""
    shape = shapes.get(name)
    return shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None


def count_numbered(shapes: Shapes, prefix: str, suffix: str = "") -> int:
    """How many distinct i there are among saved tensors named prefix{i}suffix... (layers, members, tables)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    return len({match[1] for name in shapes if (match := pattern.match(name))})


def under(shapes: Shapes, prefix: str) -> Shapes:
    """The shapes of the tensors named prefix..., without the prefix (a wrapped model's own)."""
    return {name[len(prefix):]: shape for name, shape in shapes.items() if name.startswith(prefix)}
