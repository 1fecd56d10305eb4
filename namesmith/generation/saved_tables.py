"""A count model's plain draws saved beside its weights, so that sampling it needs no torch.

A model directory of a bigram, an n-gram or a conditional count model also holds the tables its plain
names are drawn from (docs/startup.md): a first-order model's (V, V) next-token table, sampled by
`TableSampler`, or the finite chain of its own distribution (`ChainTables`: CDFs and next states),
sampled by `ChainSampler`, with the whole-name calibration of that distribution. They are the very
tables namesmith.generation.sample builds from the model (`tables_of`), so a seed draws the same
names from the saved tables as from the model. A chain over `MAX_CHAIN_BYTES` is not saved; it
samples through the model.

`PlainTables` stands in for the model where a request asks only for the model's own names (no labels,
no temperature, top-k or top-p, no constraints that need exact or guided sampling): `NameModel` hands
it to the one generation pipeline instead of loading the model, which it loads (and torch with it) on
the first request that needs more. The file is named by its sha256, written before the namesmith.json
that names it, and checked against it on load, as the weights are (namesmith.training.checkpoint).

This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from namesmith.core.errors import CheckpointError
from namesmith.core.io import checked_file, write_content_addressed
from namesmith.core.threads import one_thread
from namesmith.core.vocab import Vocab
from namesmith.generation.calibration import Calibration
from namesmith.generation.draws import (
    MAX_CHAIN_BYTES,
    ChainSampler,
    ChainTables,
    RowSampler,
    TableSampler,
    chain_bytes,
)
from namesmith.models.sparse_rows import SparseRows, own_letters

if TYPE_CHECKING:
    from namesmith.models.base import CharModel

TABLES_KEY = "plain_tables"  # namesmith.json's entry: {"file", "sha256", "model_type", "calibration"?, "rows"?}
TABLES_STEM = "tables"


@dataclass(frozen=True)
class PlainTables:
    """A model's own distribution ready to sample without the model: what the generation pipeline needs of
    a model to draw its plain names (`sampler`, `calibration`, `max_length`, `model_type`)."""

    model_type: str
    table: np.ndarray | None = None  # (V, V) float64 next-token probabilities of a first-order model
    chain: ChainTables | None = None  # any other finite chain
    calibration: Calibration | None = None  # the whole-name tilt of these draws (generation.calibration)
    max_length: int | None = None  # count models read names of any length
    condition: None = None  # no labels: a labelled request needs the model itself
    rows: SparseRows | None = None  # an adapted model's rows, assembled as they are needed (from its weights file)

    def sampler(self, vocab: Vocab, *, prefix: str, max_length: int,
                seed: int) -> TableSampler | RowSampler | ChainSampler:
        """The sampler `namesmith.generation.sample.plain_sampler` makes of the model with plain decoding."""
        if self.table is not None:
            return TableSampler(self.table, vocab, prefix, max_length, seed)
        if self.rows is not None:
            return RowSampler(self.rows, vocab, prefix, max_length, seed)
        assert self.chain is not None
        return ChainSampler(self.chain, vocab, prefix, max_length, seed)

    def arrays(self) -> dict[str, np.ndarray]:
        if self.table is not None:
            return {"probs": self.table}
        assert self.chain is not None
        return {"cdf": self.chain.cdf, "next_state": self.chain.next_state,
                "start": np.array([self.chain.start], dtype=np.int64)}


def tables_of(model: CharModel) -> PlainTables | None:
    """The tables the model's plain names are drawn from, as `namesmith.generation.sample.plain_sampler` picks them
    (None: it samples through the model itself)."""
    from namesmith.generation.sample import chain_tables, table_probs  # torch: only where a model is at hand

    states = model.chain_states()
    if states is not None and chain_bytes(states, model.vocab_size) > MAX_CHAIN_BYTES:
        return None  # a long list's n-gram: its transitions alone (int64) would take gigabytes to build
    with one_thread():  # many small tensor operations (namesmith.core.threads)
        table = table_probs(model, 1.0, None, None)
        chain = None if table is not None else chain_tables(model)
        rows = None if table is not None or chain is not None else model.sampling_rows()
    if table is None and chain is None and rows is None:
        return None
    return PlainTables(model.model_type, table=table, chain=chain, calibration=model.calibration,
                       max_length=model.max_length, rows=rows)


def rows_entry(tables: PlainTables, weights: dict[str, str], config: dict[str, Any], alphabet: str) -> dict[str, Any]:
    """The namesmith.json entry of an adapted model's rows: nothing is written, they are read from its `weights` file
    (the entry names it), with the model's `config` and the list's `alphabet`."""
    return {**weights, "model_type": tables.model_type, "max_length": tables.max_length,
            "rows": {"config": config, "alphabet": alphabet}}


def write_tables(directory: Path, tables: PlainTables) -> dict[str, Any]:
    """Save the tables under their content's name; returns the namesmith.json entry that names them."""
    from safetensors.numpy import save_file

    arrays = tables.arrays()
    name, sha = write_content_addressed(directory, TABLES_STEM, lambda tmp: save_file(arrays, tmp))
    entry: dict[str, Any] = {"file": name, "sha256": sha, "model_type": tables.model_type,
                             "max_length": tables.max_length}
    if tables.calibration is not None:
        entry["calibration"] = tables.calibration.to_dict()
    return entry


def read_tables(directory: Path, entry: Any, vocab: Vocab) -> PlainTables:
    """The tables a namesmith.json entry names, checked: file name, sha256, shapes and values."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = checked_file(directory, entry, TABLES_KEY, "namesmith.json", strings=("model_type",))
    try:
        arrays = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    calibration = None if "calibration" not in entry else Calibration.from_dict(entry["calibration"], vocab.size)
    max_length = entry.get("max_length")
    V = vocab.size
    if "rows" in entry:
        rows = entry["rows"]
        if (not isinstance(rows, dict) or not isinstance(rows.get("config"), dict)
                or not isinstance(rows.get("alphabet"), str)
                or not all(isinstance(rows["config"].get(k), int) for k in ("order", "tables", "components"))):
            raise CheckpointError(f"{directory / 'namesmith.json'}: {TABLES_KEY}.rows is malformed")
        sparse = SparseRows(arrays, rows["config"], V, own_letters(vocab, rows["alphabet"]), where=str(path))
        return PlainTables(entry["model_type"], rows=sparse, max_length=max_length)
    if set(arrays) == {"probs"}:
        table = arrays["probs"]
        if table.shape != (V, V) or table.dtype != np.float64 or not np.isfinite(table).all() or (table < 0).any():
            raise CheckpointError(f"{path}: the next-token table does not fit a vocabulary of {V} tokens")
        return PlainTables(entry["model_type"], table=table, calibration=calibration, max_length=max_length)
    if set(arrays) != {"cdf", "next_state", "start"}:
        raise CheckpointError(f"{path}: holds neither a next-token table nor a chain")
    cdf, next_state, start = arrays["cdf"], arrays["next_state"], arrays["start"]
    S = cdf.shape[0] if cdf.ndim == 2 else 0
    if (cdf.shape != (S, V) or next_state.shape != (S, V) or S == 0 or cdf.dtype != np.float32
            or next_state.dtype != np.int32 or start.shape != (1,) or not 0 <= int(start[0]) < S
            or not np.isfinite(cdf).all() or int(next_state.min()) < 0 or int(next_state.max()) >= S):
        raise CheckpointError(f"{path}: the chain's tables do not fit a vocabulary of {V} tokens")
    chain = ChainTables(cdf, next_state, int(start[0]))
    return PlainTables(entry["model_type"], chain=chain, calibration=calibration, max_length=max_length)
