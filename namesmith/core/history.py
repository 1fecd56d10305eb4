"""What a training run records: the loss curves and why it stopped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Called as callback(step, total_steps, metrics) during training; returning True asks the
# trainer to stop cleanly (after Ctrl-C, say). `metrics` holds "loss" and, when evaluated, "val_loss".
TrainCallback = Callable[[int, int, dict[str, float]], "bool | None"]


@dataclass
class TrainHistory:
    """Loss curves of one run: train loss per logged step, validation loss per evaluation."""

    train_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    val_loss: list[tuple[int, float, float]] = field(default_factory=list)  # (step, seconds, loss)
    steps: int = 0
    seconds: float = 0.0
    stop_reason: str = "finished"  # finished | time budget | early stopping | interrupted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainHistory:
        return cls(train_loss=[tuple(x) for x in d.get("train_loss", [])],
                   val_loss=[tuple(x) for x in d.get("val_loss", [])],
                   steps=d.get("steps", 0), seconds=d.get("seconds", 0.0),
                   stop_reason=d.get("stop_reason", "finished"))
