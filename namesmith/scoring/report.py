"""The seed notebook's sanity check as a report: the model's strongest transitions beside
how often the training data makes them (e.g. q→u: P = 0.76 under the model, 206 of 272 q's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from namesmith.core.vocab import Vocab


@dataclass(frozen=True)
class Transition:
    """One (previous → next) pair: the model's probability and the data's frequency."""

    previous: str
    next: str
    model_prob: float
    data_count: int  # times `previous` is followed by `next` in the training words
    data_total: int  # times `previous` is followed by anything

    @property
    def data_freq(self) -> float:
        return self.data_count / self.data_total if self.data_total else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "data_freq": self.data_freq}


def strongest_transitions(next_char_probs: torch.Tensor, pair_counts: torch.Tensor, vocab: Vocab,
                          top: int = 10) -> list[Transition]:
    """The `top` largest entries of P(next | previous) with their empirical frequencies."""
    probs = next_char_probs.detach().cpu().double()
    counts = pair_counts.detach().cpu().long()
    order = probs.flatten().argsort(descending=True)[:top]
    rows = []
    for flat in order.tolist():
        i, j = divmod(flat, probs.size(1))
        rows.append(Transition(vocab.label(i), vocab.label(j), probs[i, j].item(),
                               int(counts[i, j]), int(counts[i].sum())))
    return rows


def format_transitions(rows: list[Transition]) -> str:
    """A plain-text table of `strongest_transitions`."""
    lines = [f"{'pair':>8}  {'model P':>8}  {'data freq':>9}  {'count':>13}"]
    for r in rows:
        lines.append(f"{r.previous + ' → ' + r.next:>8}  {r.model_prob:8.1%}  {r.data_freq:9.1%}  "
                     f"{f'{r.data_count}/{r.data_total}':>13}")
    return "\n".join(lines)
