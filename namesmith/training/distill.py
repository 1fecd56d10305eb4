"""Knowledge distillation: a network trained to predict the next character as a teacher does.

Hinton, Vinyals & Dean (2015), "Distilling the knowledge in a neural network". The teacher is
any trained model of the same word list and split, most usefully an ensemble
(namesmith.models.ensemble), which predicts held-out names better than any one network but
samples several times slower. The student, one network, learns on every training character
from a mix of the usual target and the teacher's whole next-character distribution:

    loss = w · H(p_teacher, q) + (1 - w) · H(next character, q),    w = distill_weight

where q is the student's distribution and H the cross-entropy, both per character as
`models.nll.batch_loss` averages them. The teacher's distribution says how likely every other
character was, not only which one came: far more to learn from per word than the word itself,
and an ensemble's distribution has its members' quirks averaged out. So the same words teach
the student more before it overfits them. The temperature is 1: the student is meant to predict as
the teacher does, not to learn its ranking of unlikely characters (Hinton et al.'s T > 1).

On names.txt (docs/models.md, "Distillation"; benchmarks/bench_distill.py), a 384-unit LSTM taught by
the product of four networks (test 1.880) reaches test 1.886 and 1.885 alone (two seeds), against
1.915 and 1.917 trained the same way on the words alone, and samples as fast as any LSTM of its
size: 77,000 names/s, against 17,000 for its teacher.

The teacher's distributions over the training words are computed once, before training, by
`evaluate.chunked_log_probs` (the path every evaluation takes), and kept as float16 (N, T, V),
where N words of up to T - 1 characters over V tokens: 11 MB for names.txt. A table larger than
`MAX_TABLE_BYTES` is not built; the teacher then runs on each batch instead (slower steps, the
same loss). Validation, early stopping and the reported metrics stay the plain NLL of the words.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F

from namesmith.models.base import CharModel
from namesmith.models.nll import chunked_log_probs, eval_mode, target_log_probs

MAX_TABLE_BYTES = 1 << 30  # a larger table of the teacher's distributions is not built: see the module docstring


class Lessons:
    """The teacher's next-character distributions for the rows of one training split (x, y)."""

    def __init__(self, teacher: CharModel, x: torch.Tensor, y: torch.Tensor, weight: float):
        self.teacher, self.x, self.weight = teacher, x, weight
        N, T = x.shape
        self.table: torch.Tensor | None = None
        if N * T * teacher.vocab_size * 2 <= MAX_TABLE_BYTES:
            self.table = torch.zeros(N, T, teacher.vocab_size, dtype=torch.float16, device=x.device)
            start = 0
            with eval_mode(teacher), torch.no_grad():
                for log_probs, _ in chunked_log_probs(teacher, x, y):
                    B, T_chunk = log_probs.shape[:2]
                    self.table[start : start + B, :T_chunk] = log_probs.exp().to(torch.float16)
                    start += B

    def probs(self, rows: torch.Tensor, T: int) -> torch.Tensor:
        """The teacher's distributions (B, T, V), float32, at the first T positions of `rows`."""
        if self.table is not None:
            return self.table[rows, :T].float()
        with eval_mode(self.teacher), torch.no_grad():
            return F.softmax(self.teacher(self.x[rows, :T]).float(), dim=-1)


def distill_loss(logits: torch.Tensor, targets: torch.Tensor, teacher_probs: torch.Tensor, weight: float,
                 tokens_per_batch: float | None = None) -> torch.Tensor:
    """w · H(teacher, q) + (1 - w) · H(targets, q) over the real target positions (targets -1: padding):
    the mean per position, or the sum divided by `tokens_per_batch` (as `models.nll.batch_loss`)."""
    log_q = F.log_softmax(logits.float(), dim=-1)
    mask = targets >= 0
    hard = -target_log_probs(log_q, targets)
    soft = -(teacher_probs * log_q).sum(-1)
    per_position = torch.where(mask, weight * soft + (1.0 - weight) * hard, torch.zeros_like(hard))
    if tokens_per_batch is None:
        return per_position.sum() / mask.sum().clamp(min=1)
    return per_position.sum() / tokens_per_batch


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a model's tensors (names, types, shapes and values): the same teacher, or another."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def teacher_record(teacher: Any, directory: str | None) -> dict[str, Any]:
    """What a student's checkpoint says about its teacher (a `Checkpoint`): where it was, what it was, its
    weights' fingerprint and how well it predicts each split."""
    metrics = teacher.meta.get("metrics") or {}
    return {"directory": directory, "model_type": teacher.model.model_type,
            "weights_sha256": weights_fingerprint(teacher.model),
            "metrics": {part: (m or {}).get("nll") for part, m in metrics.items()}}
