"""What the model tests share: the check that sampling one token at a time agrees with a forward pass."""

from __future__ import annotations

import torch

from namesmith.models.base import CharModel


def assert_step_equals_forward(model: CharModel, idx: torch.Tensor, *, rows: list[int] | None = None, at: int = 3,
                               inference: bool = False) -> torch.Tensor:
    """Stepping `model` through `idx` (B, T) one token at a time (init_state, step) gives what one forward pass
    gives; with `rows`, the state of those rows alone (select_state) after token `at` steps on as they would.

    Runs under no_grad, or inference_mode if `inference`; returns the forward pass's output (B, T, V)."""
    with torch.inference_mode() if inference else torch.no_grad():
        full = model(idx)
        state, steps = model.init_state(idx.shape[0]), []
        for t in range(idx.shape[1]):
            out, state = model.step(state, idx[:, t])
            steps.append(out)
            if rows is not None and t == at:
                kept = model.select_state(state, torch.tensor(rows))
                later, _ = model.step(kept, idx[rows, t + 1])
                torch.testing.assert_close(later, full[rows, t + 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    return full
