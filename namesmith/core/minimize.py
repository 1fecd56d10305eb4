"""BFGS for the few smooth parameters namesmith fits in closed-form models (discounts, mixture weights).

A dense inverse-Hessian estimate and a backtracking (Armijo) line search (Nocedal & Wright 2006,
ch. 6). `torch.optim.LBFGS` would do as well, but constructing any torch optimizer imports torch's
compiler the first time (1.4 s here), a third of what `namesmith train` may take end to end.
`with_autograd` lets such fits (and adaptation's: namesmith.adaptation) run under a caller's no_grad.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

LossAndGrad = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


def minimize(loss_and_grad: LossAndGrad, x: torch.Tensor, iterations: int = 40) -> torch.Tensor:
    """A minimum of a smooth function near `x` (float64, 1-D); `loss_and_grad(x)` returns (loss, grad)."""
    loss, grad = loss_and_grad(x)
    eye = torch.eye(len(x), dtype=torch.float64)
    inverse_hessian = eye.clone()
    for _ in range(iterations):
        direction = -(inverse_hessian @ grad)
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            inverse_hessian = eye.clone()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0
        while True:
            candidate = x + step * direction
            new_loss, new_grad = loss_and_grad(candidate)
            if new_loss <= loss + 1e-4 * step * slope or step < 1e-6:
                break
            step /= 2
        if not new_loss < loss:
            break
        s, y = candidate - x, new_grad - grad
        sy = float(s @ y)
        if sy > 1e-12:
            rho = 1.0 / sy
            inverse_hessian = ((eye - rho * torch.outer(s, y)) @ inverse_hessian @ (eye - rho * torch.outer(y, s))
                               + rho * torch.outer(s, s))
        improvement = float(loss - new_loss)
        x, loss, grad = candidate, new_loss, new_grad
        if improvement < 1e-10 or float(grad.abs().max()) < 1e-7:
            break
    return x


def with_autograd(fit: Callable) -> Callable:
    """Run `fit` with autograd on: adapting fits weights by gradient, and may be asked for under
    torch.inference_mode or no_grad (a server answering a request)."""
    @functools.wraps(fit)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(False), torch.enable_grad():
            return fit(*args, **kwargs)

    return run
