"""Plain sampling from any model, all names of a batch advancing together.

This is the bottom layer of `namesmith.generation.generate`: it draws names from the model's own
distribution (after temperature, top-k and top-p), conditioned only on a prefix, and drops the
names that reach the length guard without ending. Constraints and budgets live in
`namesmith.generation.generate` (the one config in `namesmith.generation.config`), which calls the samplers made here.

`plain_sampler` picks the fastest sampler of a model, by what the model is:

- a first-order Markov model (the bigram models): its (V, V) table, sampled in NumPy by alias tables
  (`TableSampler`, namesmith.generation.draws);
- a finite Markov chain of at most `MAX_CHAIN_BYTES` of tables (the n-gram, a count model's conditional
  n-grams): its chain (`CharModel.markov_chain`) as `ChainTables`, sampled in NumPy (`ChainSampler`), the
  same sampler that a count model's saved tables use, so a seed draws the same names either way;
- a model that assembles its rows in NumPy (`CharModel.sampling_rows`: an adapted list's model whose chain
  is too large), with plain decoding: `RowSampler` (namesmith.generation.draws), as its directory's entry does;
- any other model: `ModelSampler`, which asks the model for the next-token logits of every unfinished
  name (`CharModel.step`) and draws one token per name by inverse-CDF lookup (`searchsorted` on the
  cumulative distribution), in torch on the model's device.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

from namesmith.core.clock import now
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.generation.draws import (
    MAX_CHAIN_BYTES,
    Batch,
    ChainSampler,
    ChainTables,
    RowSampler,
    TableSampler,
    chain_bytes,
    finish_batch,
    token_dtype,
)
from namesmith.models.base import CharModel


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """Probabilities (..., V) after temperature, top-k and top-p (the kept mass is renormalised
    by the sampler's inverse CDF, so top-p rows may sum to less than 1)."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the tokens more likely than it already reach top_p
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        probs = probs.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), 0.0)
    return probs


def draw(cdf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of an (unnormalised) cumulative distribution (B, V), by inverse CDF."""
    u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


def draw_numpy(cdf: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """`draw` for a float32 NumPy CDF: the same uniforms, the same indices, a fraction of the calls' cost
    (for the small batches of a request)."""
    u = torch.rand(len(cdf), 1, generator=generator).numpy() * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(1), cdf.shape[1] - 1)  # searchsorted(right=True), row by row


class ModelSampler:
    """Any model: the batch loop over `CharModel.step`, in torch on the model's device.

    Names that share a prefix share one state (a trie of prefixes): every name starts from the
    one state after the boundary and the prefix, and each step feeds the model once per distinct
    (state, next token) pair, not once per name. All 65,536 names of a batch read the boundary
    once, then at most V states, V² ...; on names.txt a batch of 65,536 names costs the network
    about 2.5 state steps per name instead of 7, and each name still draws from its own prefix's
    distribution, so the names are distributed exactly as before. Each step gives every distinct
    (state, next token) pair a fresh slot (`select_state` with the parent slots, repeated where a
    prefix branches); a model makes that cheap by sharing what siblings share (the Transformer's
    keys and values of the prefix, the recurrent models' projection of the parent's state).
    """

    def __init__(self, model: CharModel, vocab: Vocab, prefix: str, max_length: int, seed: int,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
        self.model, self.vocab, self.prefix, self.max_length = model, vocab, prefix, max_length
        self.decoding = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        self.generator = torch.Generator(device=model.device).manual_seed(seed)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return next_token_probs(logits, **self.decoding)

    def first(self, prefix: list[int]):  # noqa: ANN202
        """The one state, and its next-token probabilities (1, V), after the boundary and the forced prefix."""
        model = self.model
        state = model.init_state(1)
        for t in [BOUNDARY, *prefix]:
            logits, state = model.step(state, torch.tensor([t], device=model.device))
        return state, self._probs(logits)

    def advance(self, state, slot: torch.Tensor, token: torch.Tensor, n_slots: int):  # noqa: ANN001, ANN202
        """Feed each going name's token to its state slot.

        Returns the new state, its next-token probabilities (slots, V), each name's new slot, and
        for each new slot the old slot it continues and the token it was fed: what a caller
        carrying its own data per slot needs. `n_slots` (the old state's slots) is for subclasses.
        """
        V = self.vocab.size
        children, child = torch.unique(slot * V + token, return_inverse=True)  # sorted by parent slot
        parents, tokens = children // V, children % V
        # one fresh slot per distinct (prefix, token): finished names' slots leave, branching ones are copied
        logits, state = self.model.step(self.model.select_state(state, parents), tokens)
        return state, self._probs(logits), child, parents, tokens

    @torch.inference_mode()
    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names (None: the deadline passed first; the batch is dropped)."""
        device = self.model.device
        prefix = self.vocab.encode(self.prefix)
        room = self.max_length - len(prefix)  # characters still allowed after the prefix
        tokens = np.zeros((batch, max(room, 0)), dtype=token_dtype(self.vocab.size))
        lengths = np.full(batch, -1, dtype=np.int64)  # -1: not finished yet
        rows = torch.arange(batch)  # the output row of each name still going
        slot = torch.zeros(batch, dtype=torch.long, device=device)  # its state slot
        state, probs = self.first(prefix)
        for t in range(room + 1):
            if deadline is not None and now() > deadline:
                return None
            nxt = draw(probs.cumsum(1).index_select(0, slot), self.generator)
            ended = (nxt == BOUNDARY).cpu()
            lengths[rows[ended].numpy()] = t
            going = (~ended).nonzero().squeeze(1)
            if t == room or len(going) == 0:
                break
            rows, going = rows[going], going.to(device)
            nxt, slot = nxt[going], slot[going]
            tokens[rows.numpy(), t] = nxt.cpu().numpy()
            state, probs, slot, _, _ = self.advance(state, slot, nxt, len(probs))
        return finish_batch(tokens, lengths, self.vocab, self.prefix)


def table_probs(model: CharModel, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray | None:
    """The (V, V) next-token table of a first-order model after temperature/top-k/top-p, else None."""
    table = model.transition_table()
    if table is None or model.context_size != 1:
        return None
    with torch.inference_mode():
        logits = table.clamp_min(0).log()
        return next_token_probs(logits, temperature, top_k, top_p).double().cpu().numpy()


# each chain's tables of its model's own distribution, by id of its logits tensor while that lives (`chain_tables`):
# (a weak reference to it, the versions the tables were built from, the tables)
_PLAIN_CHAINS: dict[int, tuple[weakref.ref, tuple[int, int, int], ChainTables]] = {}
_PLAIN_CHAINS_LOCK = threading.Lock()


def _version(tensor: torch.Tensor) -> int:
    """How often the tensor was changed in place (-1 for an inference tensor, which keeps no count: it is
    changed only inside inference mode, which training never is)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def chain_tables(model: CharModel, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None) -> ChainTables | None:
    """The model's own finite chain (`CharModel.markov_chain`) ready to sample after temperature, top-k and top-p,
    if it has one of at most `MAX_CHAIN_BYTES` (else None)."""
    own_chain = model.markov_chain()
    if own_chain is None:
        return None
    logits, next_state, start = own_chain
    if chain_bytes(*logits.shape) > MAX_CHAIN_BYTES:
        return None
    # the model's own distribution is built once per chain (a server samples it on every plain request), while
    # its tensors are unchanged; other decodings (any temperature) are built per sampler, so nothing grows with them
    plain = temperature == 1.0 and top_k is None and top_p is None
    versions = (_version(logits), _version(next_state), int(start))
    with _PLAIN_CHAINS_LOCK:
        kept = _PLAIN_CHAINS.get(id(logits)) if plain else None
    if kept is not None and kept[0]() is logits and kept[1] == versions:
        return kept[2]
    with torch.inference_mode():
        probs = next_token_probs(logits.float().cpu(), temperature, top_k, top_p)
    tables = ChainTables.of(probs.numpy(), next_state.cpu().numpy(), int(start))
    if plain:
        with _PLAIN_CHAINS_LOCK:
            for key in [key for key, (ref, _, _) in _PLAIN_CHAINS.items() if ref() is None]:
                del _PLAIN_CHAINS[key]  # their models are gone
            _PLAIN_CHAINS[id(logits)] = (weakref.ref(logits), versions, tables)
    return tables


def plain_sampler(model: CharModel, vocab: Vocab, *, prefix: str, max_length: int, seed: int,
                  temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> TableSampler | RowSampler | ChainSampler | ModelSampler:
    """The fastest sampler of the model's names that start with `prefix` and have at most
    `max_length` characters (the caller checks the prefix fits and is in the vocabulary).
    Its `run(batch, deadline)` draws one batch; the model should be in eval mode."""
    table = table_probs(model, temperature, top_k, top_p)
    if table is not None:
        return TableSampler(table, vocab, prefix, max_length, seed)
    chain = chain_tables(model, temperature, top_k, top_p)
    if chain is not None:
        return ChainSampler(chain, vocab, prefix, max_length, seed)
    rows = model.sampling_rows() if temperature == 1.0 and top_k is None and top_p is None else None
    if rows is not None:
        return RowSampler(rows, vocab, prefix, max_length, seed)
    return ModelSampler(model, vocab, prefix, max_length, seed, temperature, top_k, top_p)
