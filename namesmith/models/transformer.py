"""A GPT-style Transformer decoder (Vaswani et al. 2017, "Attention Is All You Need").

The layout is GPT-2's pre-norm one (Radford et al. 2019), as in nanoGPT: token + learned
position embeddings, `n_layer` blocks of (LayerNorm -> causal self-attention -> residual,
LayerNorm -> 4x GELU MLP -> residual), a final LayerNorm and a linear head. Initialisation
follows GPT-2: normal(0, 0.02), with the projections that write into the residual stream
scaled by 1/sqrt(2 n_layer) so the stream's variance does not grow with depth.

Training uses `F.scaled_dot_product_attention(..., is_causal=True)` on a fused q/k/v
projection. Sampling keeps a key/value cache: `step` feeds one token per row, computes that
position's query, key and value only and attends over the keys and values of the prefix, so a
name of n characters costs n single-position passes instead of n passes over its whole prefix.
The cache is a trie (`KVCache`): names that share a prefix share its keys and values, and
branching or dropping a name copies an index per position, not the keys and values, so a
sampler that gives each distinct prefix one row (namesmith.generation.sample) never copies the past. On the
CPU a step runs in blocks of `STEP_ROWS` rows per thread through every layer: each block gathers its
prefixes' keys and values once, and its activations, the attention's (positions, rows, heads)
temporaries and the MLP's hidden layer stay in the cache instead of streaming through memory
between operations.

`block_size` is the longest sequence the model can read: the boundary token plus the longest
word. `Transformer.make_config(overrides, corpus)` (used by namesmith.training.fitting.build_model) sets it
to `block_size_for(corpus)` = corpus.max_word_length + 1 when the user does not choose one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from namesmith.core.errors import DataError
from namesmith.models.base import NEURAL_TRAIN_DEFAULTS, CharModel, Shapes, Sizes, check_config, count_numbered, dim

STEP_ROWS = 256  # rows per block of a CPU sampling step and thread (see the module docstring)


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters; the defaults are docs/models.md's (trained on names.txt in 20 CPU minutes)."""

    block_size: int = 32  # longest sequence (boundary + word); see Transformer.make_config
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # makemore uses 64; wider + dropout generalises better on ~25k names
    dropout: float = 0.2  # on attention weights, residual branches and embeddings (training only)
    bias: bool = True  # biases in the Linear layers and LayerNorms
    tie_weights: bool = False  # share the token embedding with the output head (Press & Wolf 2017)

    def __post_init__(self) -> None:
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            check_config(isinstance(value, int) and value >= 1, f"{name} must be a positive "
                         f"integer, got {value!r}")
        check_config(self.n_embd % self.n_head == 0,
                     f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        check_config(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class KVCache(NamedTuple):
    """Sampling state: the keys and values of every prefix read so far, stored once per prefix.

    Names that share a prefix share its keys and values (a trie): levels[s] is
    (n_s, n_layer, 2, n_head, head_size), the keys (index 0) and values (1) of every layer at
    position s of the n_s distinct prefixes fed so far, and row i of the batch finds its own in
    levels[s][nodes[i, s]]. A step appends one level and never writes an old one, so
    `select_state` (branching, dropping finished names) copies indices, not keys and values,
    and a state stays valid after it is stepped. Past block_size the levels are not used.
    """

    levels: tuple[torch.Tensor, ...]  # one per position read (at most block_size)
    nodes: torch.Tensor  # (B, len(levels)) long
    tokens: torch.Tensor  # (B, t)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.n_embd // config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values (B, n_head, T, head_size) of x (B, T, C)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, n_head, T, head_size) -> output projection (B, T, C)."""
        B, _, T, _ = y.shape
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.merge(y)

    def forward_cached(self, x: torch.Tensor, cache: torch.Tensor, t: int) -> torch.Tensor:
        """One new position t: x (B, C) attends over cache[:t] and itself; writes its k, v to cache[t].

        A single query sees every earlier position, so there is no mask. At these sizes (a few
        positions, head_size 16) broadcasting beats batched matmuls and SDPA: each of the
        B * n_head products is tiny, so their per-matrix overhead would dominate.
        """
        B, C = x.shape
        qkv = self.c_attn(x)  # (B, 3C)
        q = qkv[:, :C].view(B, self.n_head, self.head_size)
        cache[t] = qkv[:, C:].view(B, 2, self.n_head, self.head_size)
        k, v = cache[: t + 1].unbind(2)  # (t+1, B, nh, hs) each
        att = (q * k).sum(-1).mul_(1.0 / math.sqrt(self.head_size)).softmax(dim=0)  # (t+1, B, nh)
        if self.training and self.dropout > 0:
            att = F.dropout(att, self.dropout)
        y = (att.unsqueeze(-1) * v).sum(0).view(B, C)  # weighted sum of the values, heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def forward_cached(self, x: torch.Tensor, cache: torch.Tensor, t: int) -> torch.Tensor:
        x = x + self.attn.forward_cached(self.ln_1(x), cache, t)
        return x + self.mlp(self.ln_2(x))


class Transformer(CharModel):
    """GPT-2-style decoder over characters, with a key/value cache for sampling."""

    model_type: ClassVar[str] = "transformer"
    config_class: ClassVar[type] = TransformerConfig
    # ~800k parameters for 20 minutes on a 2-core CPU. At 2e-3 the validation loss is lowest after
    # about 21,500 steps (13 minutes on an idle machine) and early stopping ends the run near
    # 26,500 (1e-3 ended 0.011 higher, test 1.9335 alone, after the whole budget). On a slower
    # machine the time budget binds, and the cosine follows it, so the rate is annealed when the
    # budget ends.
    neural: ClassVar[bool] = True
    default_train_config: ClassVar[dict[str, Any]] = {
        **NEURAL_TRAIN_DEFAULTS,
        "max_steps": 31_000,
        "learning_rate": 2e-3,
        "learning_rate_end": 5e-5,
        "warmup_steps": 200,
        "batch_size": 64,
        "patience": 10,
        "time_budget": 1140.0,
    }

    def __init__(self, vocab_size: int, config: TransformerConfig | None = None):
        config = config or TransformerConfig()
        super().__init__(vocab_size, config)
        self.wte = nn.Embedding(vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # the layers that add into the residual stream
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        c = TransformerConfig(**config)
        yield "vocabulary size", vocab_size, dim(shapes, "wte.weight", 0)
        yield "n_embd", c.n_embd, dim(shapes, "wte.weight", 1)
        yield "block_size", c.block_size, dim(shapes, "wpe.weight", 0)
        yield "n_layer", c.n_layer, count_numbered(shapes, "blocks.", ".attn.c_attn.weight")
        yield "vocabulary size", vocab_size, dim(shapes, "lm_head.weight", 0)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @staticmethod
    def block_size_for(corpus: Any) -> int:
        """The block_size that fits every word of `corpus`: the boundary plus its longest word."""
        return corpus.max_word_length + 1

    @classmethod
    def make_config(cls, overrides: dict[str, Any], corpus: Any = None) -> TransformerConfig:
        """The config for `overrides` (what the user chose); block_size fits the corpus unless given."""
        overrides = dict(overrides)
        if corpus is not None:
            needed = cls.block_size_for(corpus)
            given = overrides.setdefault("block_size", needed)
            check_config(given >= needed, f"block_size {given} is too small for the longest word "
                         f"({corpus.max_word_length} characters + the boundary token); use at least {needed}")
        return TransformerConfig(**overrides)

    @property
    def max_length(self) -> int:
        return self.config.block_size

    def _check_length(self, length: int) -> None:
        if length > self.config.block_size:
            raise DataError(f"a sequence of {length} tokens (boundary included) is longer than the transformer's "
                            f"block_size={self.config.block_size}; words may have at most "
                            f"{self.config.block_size - 1} characters (train with a larger block_size)")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        self._check_length(T)
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    # --- incremental generation with a key/value cache -----------------------------------------
    def init_state(self, batch_size: int) -> KVCache:
        empty = torch.empty(batch_size, 0, dtype=torch.long, device=self.device)
        return KVCache((), empty, empty)

    def step(self, state: KVCache, token: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """Feed tokens (B,) at position t = len(state.tokens); logits (B, V) of position t + 1.

        Past block_size tokens the model reads the last block_size ones afresh (a sliding
        window, as the base class does), since position embeddings change when the window moves.
        """
        tokens = torch.cat([state.tokens, token.view(-1, 1)], dim=1)  # (B, t+1)
        t = state.tokens.shape[1]
        if t >= self.config.block_size:
            return self(tokens[:, -self.config.block_size:])[:, -1], state._replace(tokens=tokens)
        cfg = self.config
        x = self.drop(self.wte(token.view(-1)) + self.wpe.weight[t])  # (B, C)
        B = x.size(0)
        grad = torch.is_grad_enabled()
        rows = STEP_ROWS * torch.get_num_threads() if x.device.type == "cpu" and not grad else B
        logits = torch.empty(B, self.vocab_size, device=x.device, dtype=x.dtype)
        level = torch.empty(B, cfg.n_layer, 2, cfg.n_head, cfg.n_embd // cfg.n_head, device=x.device, dtype=x.dtype)
        # one block's keys and values at positions 0..t, every layer: (t+1, b, L, 2, nh, hs)
        kv = torch.empty(t + 1, min(rows, B), *level.shape[1:], device=x.device, dtype=x.dtype)
        for start in range(0, B, rows):
            part = slice(start, start + rows)
            nodes, past = state.nodes[part], kv[:, : len(level[part])]
            for s, keys_values in enumerate(state.levels):  # this block's prefixes' keys and values
                if grad:  # out= cannot record autograd; sampling runs in inference_mode
                    past[s] = keys_values[nodes[:, s]]
                else:
                    torch.index_select(keys_values, 0, nodes[:, s], out=past[s])
            h = x[part]
            for layer, block in enumerate(self.blocks):
                h = block.forward_cached(h, past[:, :, layer], t)  # writes position t's keys and values
            level[part] = past[t]
            logits[part] = self.lm_head(self.ln_f(h))
        nodes = torch.cat([state.nodes, torch.arange(B, device=x.device).view(-1, 1)], dim=1)
        return logits, KVCache((*state.levels, level), nodes, tokens)

    def select_state(self, state: KVCache, rows: torch.Tensor) -> KVCache:
        return KVCache(state.levels, state.nodes[rows], state.tokens[rows])
