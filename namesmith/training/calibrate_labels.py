"""Whole-name calibration of a conditional count model: a calibration per label node.

`calibrate_labels` chooses the features and the prior's σ² for the root (every label marginalised) as
`namesmith.training.calibrate.calibrate` chooses them for any model, then tilts each label node (sex=F,
decade=1990s, both, ...) with them towards the training rows it was counted on (Rosenfeld, Chen & Zhu 2001,
fitted by moment matching, as in `calibrate`). A sparse model (a vocabulary of many scripts) calibrates its
root alone (`calibrate_root`).
"""

from __future__ import annotations

from typing import Any

import torch

from namesmith.core.progress import Phase
from namesmith.generation.calibration import LabelCalibrations, word_cells
from namesmith.generation.config import GenerateConfig
from namesmith.generation.exact import markov_chain
from namesmith.models.nll import mean_nll_per_char, word_log_probs
from namesmith.training.calibrate import (
    END_BINS,
    MAX_DP_CELLS,
    CalibrationReport,
    calibrate,
    fit_calibrations,
    length_bins,
    model_cells,
)

# A conditional model's label nodes calibrated at most: their DPs' cells (states × vocabulary) in all
# (us, sex × decade: 45 nodes of 133,174 × 27 cells), and the training weight a node needs for its own.
LABEL_DP_CELLS = 1 << 28
MIN_NODE_WEIGHT = 50.0
# A sparse conditional model (a vocabulary of many scripts: `world`, `surnames`) calibrates its root alone (its 164
# label nodes would be sampled one by one), chosen on this many validation words at most (its root scores about
# 800 a second of CPU; its DRAWS take about 4 s), so that `train --data world` keeps within a minute.
ROOT_VALIDATION = 2000


def label_nodes(model: Any, codes: torch.Tensor, weights: torch.Tensor) -> list[tuple[int, ...]]:
    """The nodes of a conditional count model that get their own calibration: the root, then nodes of one
    label, two, ... (its nodes' order), each with at least MIN_NODE_WEIGHT of training weight, while their
    DP's cells (states × vocabulary each) stay within LABEL_DP_CELLS."""
    nodes = [tuple(node) for node in model.node_codes.tolist()]
    chain = markov_chain(model.given_codes([nodes[0]]), model.vocab_size, GenerateConfig())
    per_node = chain.probs.numel() if chain is not None else MAX_DP_CELLS
    chosen, unknown = [], model.condition.unknown()
    for node in nodes:
        if chosen and (len(chosen) + 1) * per_node > LABEL_DP_CELLS:
            break
        if node == nodes[0] or float(weights[node_rows(node, codes, unknown)].sum()) >= MIN_NODE_WEIGHT:
            chosen.append(node)
    # a node's model mixes its ancestors' components, cached a few at a time: the nodes of one value of the
    # last label (decade=1950s, then sex=F and sex=M of the 1950s), then the next, reuse the most
    return sorted(chosen, key=lambda node: [-1 if c == u else c for c, u in zip(node[::-1], unknown[::-1])])


def node_rows(node: tuple[int, ...], codes: torch.Tensor, unknown: tuple[int, ...]) -> torch.Tensor:
    """(N,) bool: the rows (label codes (N, k)) a node's model was counted on: those agreeing with each label
    the node fixes."""
    rows = torch.ones(len(codes), dtype=torch.bool)
    for j, (c, u) in enumerate(zip(node, unknown)):
        if c != u:
            rows &= codes[:, j] == c
    return rows


def calibrate_labels(model: Any, corpus: Any, *, choice: str = "auto", max_len: int, seed: int = 1337
                     ) -> tuple[LabelCalibrations | None, CalibrationReport]:
    """`calibrate` for a conditional count model and its labelled corpus. The features and σ² are chosen as
    `calibrate` chooses them for the root (every label marginalised) on every validation row; then each of
    the `label_nodes` is tilted with them towards the training rows it was counted on (weighted as it counted
    them). The report's validation NLL is that of the validation rows of those nodes, each scored by its own
    node's model; auto keeps the calibrations where they lower it. A sparse model (a vocabulary of many
    scripts) gets the root's alone (`calibrate_root`). The model is not changed: the caller sets
    `model.set_label_calibrations`."""
    vocab, unknown = corpus.vocab, model.condition.unknown()
    train_words, val_words = corpus.words("train"), corpus.words("val")
    codes, weights = corpus.codes["train"].cpu(), torch.from_numpy(corpus.weights["train"])
    saved = model.label_calibrations
    model.set_label_calibrations(None)  # the model's own distributions, untilted
    try:
        if model.sparse:
            return calibrate_root(model, corpus, choice=choice, max_len=max_len, seed=seed)
        root_calibration, report = calibrate(model.given_codes([unknown]), vocab, train_words, val_words,
                                             choice=choice, max_len=max_len, seed=seed, weights=weights)
        if root_calibration is None:
            return None, report
        L = length_bins(train_words)
        T = max(L, END_BINS)
        lengths, last = word_cells(train_words, vocab)
        val_codes = corpus.codes["val"].cpu()
        nodes = label_nodes(model, codes, weights)
        cells, counts, val_words_of, val_base = [], [], {}, []
        phase = Phase("calibration: the label nodes", len(nodes), "nodes")
        for node in nodes:
            phase.advance(0)  # a line when one took long
            given = model.given_codes([node])
            cells.append(model_cells(given, vocab, T, max_len, seed))
            rows = node_rows(node, codes, unknown)
            count = torch.zeros(T + 1, vocab.size, dtype=torch.float64)
            counts.append(count.index_put_((lengths[rows].clamp(max=T), last[rows]), weights[rows].double(),
                                           accumulate=True))
            at = (val_codes == torch.tensor(node)).all(1).nonzero().squeeze(1).tolist()  # the rows it scores
            val_words_of[node] = [val_words[i] for i in at]
            val_base.append(word_log_probs(given, val_words_of[node], vocab))
            phase.advance()
    finally:
        model.set_label_calibrations(saved)
    calibrations = LabelCalibrations(dict(zip(nodes, fit_calibrations(
        cells, torch.stack(counts), root_calibration.features, root_calibration.sigma2, L))))
    scored = [w for node in nodes for w in val_words_of[node]]
    base = torch.cat(val_base)
    tilt = torch.cat([calibrations.of(node).word_log_weights(val_words_of[node], vocab) for node in nodes])
    validation = {"none": mean_nll_per_char(base, scored) or 0.0,
                  report.choice: mean_nll_per_char(base + tilt, scored) or 0.0}
    method = "+".join(sorted({c.method for c in cells}))
    note = "; ".join([f"{len(nodes)} of {len(model.node_codes)} label nodes calibrated with the features and σ² "
                      f"chosen for the root (validation NLL of the root: none {report.validation.get('none', 0):.4f},"
                      f" {report.choice} {report.validation.get(report.choice, 0):.4f}); validation NLL of the "
                      f"{len(scored):,} of {len(val_words):,} validation rows of those nodes",
                      *sorted({c.note for c in cells if c.note})])
    if choice == "auto" and scored and validation[report.choice] >= validation["none"]:
        return None, CalibrationReport("none", method, validation, note)
    return calibrations, CalibrationReport(report.choice, method, validation, note)


def calibrate_root(model: Any, corpus: Any, *, choice: str, max_len: int, seed: int
                   ) -> tuple[LabelCalibrations | None, CalibrationReport]:
    """`calibrate_labels` of a sparse conditional model (a vocabulary of many scripts): its label nodes are no
    finite chain, and sampling each would take minutes, so the root alone (the names drawn without `where`) is
    calibrated, from its own draws, chosen on ROOT_VALIDATION of the validation words at most."""
    unknown, val_words = model.condition.unknown(), corpus.words("val")
    val_words = val_words[::max(1, -(-len(val_words) // ROOT_VALIDATION))]  # every k-th: ROOT_VALIDATION at most
    calibration, report = calibrate(model.given_codes([unknown]), corpus.vocab, corpus.words("train"), val_words,
                                    choice=choice, max_len=max_len, seed=seed,
                                    weights=torch.from_numpy(corpus.weights["train"]))
    note = "; ".join(filter(None, ["the root alone calibrated (a vocabulary of many scripts: its label nodes are "
                                   "no finite chain, and sampling each would take minutes)", report.note]))
    report = CalibrationReport(report.choice, report.method, report.validation, note)
    return (None if calibration is None else LabelCalibrations({unknown: calibration})), report
