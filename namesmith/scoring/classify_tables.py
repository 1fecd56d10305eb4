"""A conditional count model's classification without torch: its nodes' Kneser-Ney rows as back-off tables.

`namesmith classify -m DIR NAME` spent most of its time importing torch (docs/startup.md). Classifying a
name needs, at each of its positions, every node's next-token distribution (namesmith.models.conditional_rows),
mixed per label combination (namesmith.models.conditional_counts). A node's interpolated Kneser-Ney n-gram
is a back-off table (as in the ARPA format): for each order k, the contexts it saw, each with its back-off
weight γ, and the k-grams it saw, each with its α, so that

    P_k(c | h) = γ(h) · P_{k-1}(c | h') + α(h c)   after a context h it saw, else P_{k-1}(c | h')

from the uniform row of order 0 (h' is h without its oldest token). The γ's and α's are computed by the
torch model when it is saved (`weighted_kn.backoff_orders`: the discounts and continuation counts stay in
one place), with the mixture weights of each combination classification asks for (`mixture_parts`). Here
NumPy only looks them up and applies the rule above, the mixture and the calibration tilt, which gives the
torch path's posteriors to about 1e-6 (tests/scoring/test_classify_saved.py): α and γ are kept as float32,
the precision of the torch path's rows.

The file is named by its sha256, written before the namesmith.json that names it and checked when read, as
the weights are. Tables over MAX_CLASSIFY_BYTES are not saved (`us`, 45 nodes of order 6: 46 MB); such a
model, and a directory saved before, classifies through the model (torch).

This module imports no torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from namesmith.core.conditional import Condition
from namesmith.core.errors import CheckpointError
from namesmith.core.io import checked_file, write_content_addressed
from namesmith.core.threads import one_thread
from namesmith.core.vocab import BOUNDARY, Vocab

if TYPE_CHECKING:
    from namesmith.models.base import CharModel
    from namesmith.scoring.classify import LabelTilts

CLASSIFY_KEY = "classify_tables"  # namesmith.json's entry: {"file", "sha256"}
CLASSIFY_STEM = "classify"
MAX_CLASSIFY_BYTES = 64 << 20  # back-off tables saved at most (us: 46 MB); larger ones classify through torch
COLUMNS = ("contexts", "backoff", "grams", "alpha")  # per order: context keys, their γ, k-gram keys, their α


@dataclass(frozen=True)
class ClassifyTables:
    """What classifying names by a conditional count model needs of it, without the model (see the module
    docstring). `orders[k-1]` holds order k's COLUMNS, each node's rows one run, `<column>_offsets` their bounds."""

    condition: Condition
    calibrations: LabelTilts | None  # the label nodes' calibrations (generation.calibration.LabelCalibrations)
    vocab_size: int
    combinations: dict[tuple[int, ...], int]  # each combination classification asks for -> its row of `parts`
    parts: np.ndarray  # (C, S) float32: θ of each node in each combination's mixture (0: not in it)
    orders: list[dict[str, np.ndarray]]

    @property
    def labels(self) -> dict[str, list[str]]:
        return dict(self.condition.labels)

    def saved_log_likelihoods(self, vocab: Vocab, names: list[str], combinations: list[tuple[int, ...]]
                              ) -> np.ndarray:
        """(N, C) log P(name | combination) (float64) of readable names, calibrated: what
        `namesmith.scoring.classify.combination_log_likelihoods` gives from the model."""
        parts = self.parts[[self.combinations[codes] for codes in combinations]]  # (C, S)
        nodes = np.flatnonzero(parts.any(0))
        contexts, targets, name_of = self._positions(vocab, names)
        logp = _log_softmax(np.log(self._rows(nodes, contexts)).astype(np.float32))  # (S', P, V)
        slot = {int(a): i for i, a in enumerate(nodes)}
        out = np.zeros((len(names), len(combinations)))
        for c, weights in enumerate(parts):
            present = np.flatnonzero(weights)  # the mixture's nodes, in the order the model sums them
            if len(present) == 1 and weights[present[0]] == 1.0:
                mixed = logp[slot[int(present[0])]]
            else:
                mixed = _log_softmax(sum(weights[a] * logp[slot[int(a)]] for a in present))
            out[:, c] = np.bincount(name_of, mixed[np.arange(len(targets)), targets].astype(np.float64),
                                    minlength=len(names))
        if self.calibrations is not None:
            out += self.calibrations.combination_log_weights(names, vocab, combinations)
        return out

    def _positions(self, vocab: Vocab, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each position of each name: the keys of its last 0..N-1 tokens (P, N), newest the lowest digit and
        the start padded with the boundary, as the model's n-gram keys are; the token that follows; its name."""
        N, B = len(self.orders), self.vocab_size + 1
        K = N - 1
        contexts, targets, name_of = [], [], []
        for i, name in enumerate(names):
            tokens = [BOUNDARY] * K + [vocab.stoi[c] for c in name] + [BOUNDARY]
            for t in range(len(name) + 1):
                window = tokens[t : t + K]  # oldest first
                keys = [0]
                for j in range(K):
                    keys.append(keys[-1] + (window[K - 1 - j] + 1) * B**j)
                contexts.append(keys)
                targets.append(tokens[t + K])
                name_of.append(i)
        return np.array(contexts, np.int64).reshape(-1, N), np.array(targets, np.intp), np.array(name_of, np.intp)

    def _rows(self, nodes: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """(S', P, V) float64 P(next | context) of each node at each position, by the back-off rule, order by
        order (`weighted_kn.rows_after` does the same operations in the same order)."""
        V, B = self.vocab_size, self.vocab_size + 1
        rows = np.full((len(nodes), len(contexts), V), 1.0 / V)  # order 0: uniform
        for k, table in enumerate(self.orders, start=1):
            keys = contexts[:, k - 1].astype(table["contexts"].dtype)  # searchsorted would copy the table to cast it
            for i, node in enumerate(nodes):
                lo, hi = table["contexts_offsets"][node : node + 2]
                seen = table["contexts"][lo:hi]
                pos = np.searchsorted(seen, keys).clip(max=max(len(seen) - 1, 0))
                found = np.flatnonzero(seen[pos] == keys) if len(seen) else np.zeros(0, np.intp)
                if not len(found):
                    continue
                first, last = table["grams_offsets"][node : node + 2]
                grams = table["grams"][first:last]
                first_gram = keys[found].astype(grams.dtype) * B  # the k-grams after h are h·B + 1 .. h·B + V
                starts = np.searchsorted(grams, first_gram)
                lengths = np.searchsorted(grams, first_gram + B) - starts
                at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
                alphas = np.zeros((len(found), V))
                alphas[np.repeat(np.arange(len(found)), lengths), grams[at] % B - 1] = table["alpha"][first + at]
                backoff = table["backoff"][lo + pos[found]].astype(np.float64)
                rows[i, found] = backoff[:, None] * rows[i, found] + alphas
        return rows


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, in the array's precision (float32, as the torch path computes it)."""
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def classify_arrays(model: CharModel) -> dict[str, np.ndarray] | None:
    """The arrays of a conditional count model's `ClassifyTables` (None: not a conditional n-gram of counts, or
    tables over MAX_CLASSIFY_BYTES; built node by node, so a model far over the bound stops early)."""
    from namesmith.models.weighted_kn import backoff_orders
    from namesmith.scoring.classify import asked_combinations

    if getattr(model, "component_type", None) != "ngram" or model.sparse or not len(model.gram_keys):
        return None
    N, S = model.order, len(model.node_codes)
    key_type = np.int32 if model.base**N < 2**31 else np.int64
    combinations = asked_combinations(model.condition)[0]
    parts = np.zeros((len(combinations), S), np.float32)
    for c, codes in enumerate(combinations):
        for a, weight in model.mixture_parts(codes):
            parts[c, a] = weight
    columns: list[dict[str, list[np.ndarray]]] = [{name: [] for name in COLUMNS} for _ in range(N)]
    size = parts.nbytes
    for node in range(S):
        for k, tables in enumerate(backoff_orders(model.node_counts(node), model.node_discounts[node].cpu())):
            for name, values in zip(COLUMNS, tables):
                array = values.cpu().numpy().astype(np.float32 if values.is_floating_point() else key_type)
                columns[k][name].append(array)
                size += array.nbytes
        if size > MAX_CLASSIFY_BYTES:
            return None
    arrays = {"combinations": np.array(combinations, np.int64).reshape(len(combinations), -1), "parts": parts}
    for k, by_name in enumerate(columns, start=1):
        for name in ("contexts", "grams"):
            arrays[f"{name}_offsets_{k}"] = np.cumsum([0] + [len(a) for a in by_name[name]]).astype(np.int64)
        for name, arrays_of_nodes in by_name.items():
            arrays[f"{name}_{k}"] = np.concatenate(arrays_of_nodes)
    return arrays


def write_classify_tables(directory: Path, model: CharModel) -> dict[str, Any] | None:
    """Save the model's classification tables under their content's name; returns the namesmith.json entry that
    names them (None: it has none, see `classify_arrays`)."""
    with one_thread():  # many small tensor operations (namesmith.core.threads)
        arrays = classify_arrays(model)
    if arrays is None:
        return None
    from safetensors.numpy import save_file

    name, sha = write_content_addressed(directory, CLASSIFY_STEM, lambda tmp: save_file(arrays, tmp))
    return {"file": name, "sha256": sha}


def read_classify_tables(directory: Path, meta: dict[str, Any], vocab: Vocab, calibrations: LabelTilts | None
                         ) -> ClassifyTables:
    """The tables namesmith.json's CLASSIFY_KEY entry names, checked: file name, sha256, shapes and values;
    `calibrations`: the model's label calibrations, read from namesmith.json (training.checkpoint)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = checked_file(directory, meta.get(CLASSIFY_KEY), CLASSIFY_KEY, "namesmith.json")
    try:
        arrays = load_file(path)
        condition = Condition.from_dict(meta["model_config"]["condition"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable classification tables ({e})") from None
    orders = _checked_orders(path, arrays, vocab.size)
    combinations, parts = arrays.get("combinations"), arrays.get("parts")
    S = len(orders[0]["contexts_offsets"]) - 1
    if (combinations is None or parts is None or combinations.ndim != 2 or combinations.shape[1] != len(condition)
            or parts.shape != (len(combinations), S) or parts.dtype != np.float32 or not np.isfinite(parts).all()):
        raise CheckpointError(f"{path}: the combinations' mixture weights do not fit the model's labels")
    rows = {tuple(codes): c for c, codes in enumerate(combinations.tolist())}
    return ClassifyTables(condition, calibrations, vocab.size, rows, parts, orders)


def _checked_orders(path: Path, arrays: dict[str, np.ndarray], V: int) -> list[dict[str, np.ndarray]]:
    """Each order's columns and offsets, checked against each other and the vocabulary (CheckpointError)."""
    B, orders = V + 1, []
    while f"contexts_{len(orders) + 1}" in arrays:
        k = len(orders) + 1
        table = {name: arrays.get(f"{name}_{k}") for name in (*COLUMNS, "contexts_offsets", "grams_offsets")}
        if any(a is None or a.ndim != 1 for a in table.values()) or not _fits(table, k, B) or (
                orders and len(table["contexts_offsets"]) != len(orders[0]["contexts_offsets"])):
            raise CheckpointError(f"{path}: order {k} of the classification tables does not fit a vocabulary of "
                                  f"{V} tokens")
        orders.append(table)
    if not orders or len(arrays) != 2 + 6 * len(orders):
        raise CheckpointError(f"{path}: holds no classification tables of orders 1..N")
    return orders


def _fits(table: dict[str, np.ndarray], k: int, B: int) -> bool:
    """Whether one order's columns agree: lengths, offsets, digits in range, weights in [0, 1]."""
    contexts, backoff, grams, alpha = (table[name] for name in COLUMNS)
    ok = len(contexts) == len(backoff) and len(grams) == len(alpha) and backoff.dtype == alpha.dtype == np.float32
    for keys, offsets in ((contexts, table["contexts_offsets"]), (grams, table["grams_offsets"])):
        ok = ok and keys.dtype in (np.int32, np.int64) and offsets.dtype == np.int64 and len(offsets) > 1 and \
            offsets[0] == 0 and offsets[-1] == len(keys) and bool((np.diff(offsets) >= 0).all())
    if not ok or not len(grams):
        return ok
    return bool(contexts.min() >= 0 and contexts.max() < B ** (k - 1) and grams.min() >= 1 and grams.max() < B**k
                and (grams % B > 0).all() and ((backoff >= 0) & (backoff <= 1)).all()
                and ((alpha >= 0) & (alpha <= 1)).all())
