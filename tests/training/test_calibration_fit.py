"""The calibration's fit (namesmith.training.calibrate.fit_calibrations): Newton's method on the regularised
moment-matching objective, checked against autograd's gradient and Hessian of that objective."""

import torch

from namesmith.training.calibrate import CellDistribution, _feature_index, _newton_step, fit_calibrations


def problem(seed: int, K: int = 3, T: int = 9, V: int = 6, sampled: bool = False):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(K, T + 1, V, generator=g, dtype=torch.float64) ** 4  # uneven, some cells nearly empty
    probs[:, 0] = 0.0  # no empty names
    probs /= probs.sum((1, 2), keepdim=True)
    shifted = probs.clone()
    shifted[:, 1:] = probs[:, 1:].roll(1, 1)  # a list whose lengths differ from the model's
    counts = torch.poisson(shifted * 2000, generator=g)
    method = "sampled" if sampled else "exact"
    cells = [CellDistribution(probs[k], method, draws=400 if sampled else 0) for k in range(K)]
    return cells, counts


def objective(cells, counts, lam, L, E, sigma2):
    """The per-word objective of each k, as the docstring of fit_calibration states it, with autograd."""
    K, T1, V = counts.shape
    groups = _feature_index("length+end", L, E, T1 - 1, V)
    g = sum(lam[:, off:off + size][:, index] for (index, size), off in zip(groups, (0, groups[0][1])))
    n = counts.sum((1, 2))
    log_m = torch.stack([c.probs for c in cells]).clamp_min(1e-300).log()
    log_z = torch.logsumexp((log_m + g).view(K, -1), 1)
    return (-(counts * g).sum((1, 2)) + n * log_z + (lam**2).sum(1) / (2 * sigma2)) / n


def as_vector(cal, E, V):
    return torch.tensor(list(cal.length_weights) + [w for row in cal.end_weights for w in row], dtype=torch.float64)


def test_the_fit_is_the_optimum_of_the_objective():
    """The gradient at the fitted λ is zero to rounding (the old L-BFGS stopped at about 1e-7 after 130 steps)."""
    L, E = 7, 4
    for seed in range(3):
        for sigma2 in (0.1, 30.0):
            cells, counts = problem(seed)
            cals = fit_calibrations(cells, counts, "length+end", sigma2, L, E)
            lam = torch.stack([as_vector(c, E, counts.size(2)) for c in cals]).requires_grad_()
            value = objective(cells, counts, lam, L, E, sigma2)
            (grad,) = torch.autograd.grad(value.sum(), lam)
            assert float(grad.abs().max()) < 1e-10, (seed, sigma2, float(grad.abs().max()))
            groups = _feature_index("length+end", L, E, counts.size(1) - 1, counts.size(2))
            for k, cal in enumerate(cals):  # log Z is the tilted model's normaliser
                weights = lam[k].detach()
                tilt = weights[:groups[0][1]][groups[0][0]] + weights[groups[0][1]:][groups[1][0]]
                log_z = torch.logsumexp((cells[k].probs.clamp_min(1e-300).log() + tilt).view(-1), 0)
                assert abs(cal.log_z - float(log_z)) < 1e-12


def test_a_newton_step_solves_with_the_exact_hessian():
    """The structured solve (Schur complement of the end block, Sherman-Morrison) equals H⁻¹·grad with the Hessian
    autograd computes, fitted weights and weights held at 0 alike."""
    L, E, sigma2 = 7, 4, 3.0
    cells, counts = problem(7, sampled=True)
    K, T1, V = counts.shape
    groups = _feature_index("length+end", L, E, T1 - 1, V)
    La, D = groups[0][1], groups[0][1] + groups[1][1]
    lam0 = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.3
    fitted = (torch.rand(K, D, generator=torch.Generator().manual_seed(2)) > 0.2).double()
    lam0 = lam0 * fitted
    n = counts.sum((1, 2))
    ridge = 1 / (sigma2 * n)
    for k in range(K):
        free = fitted[k] > 0

        def f(x, k=k, free=free):
            full = torch.zeros(K, D, dtype=torch.float64)
            full[k, free] = x
            full = full + lam0 * (torch.arange(K) != k)[:, None]
            return objective(cells, counts, full, L, E, sigma2)[k]

        x = lam0[k, free].clone().requires_grad_()
        (grad,) = torch.autograd.grad(f(x), x)
        hess = torch.autograd.functional.hessian(f, x.detach())
        want = torch.linalg.solve(hess, grad)
        # the step's inputs: the tilted model's feature means and the joint of the two groups
        index = torch.stack([i for i, _ in groups], -1).view(T1 * V, -1) + torch.tensor([0, La])
        log_m = torch.stack([c.probs for c in cells]).clamp_min(1e-300).log().view(K, -1)
        p = torch.softmax(log_m + lam0[:, index].sum(-1), 1)
        mean = torch.zeros(K, D, dtype=torch.float64).index_add_(1, index.T.reshape(-1), p.repeat(1, 2))
        joint = torch.zeros(K, La * (D - La), dtype=torch.float64).index_add_(
            1, index[:, 0] * (D - La) + index[:, 1] - La, p).view(K, La, D - La)
        full_grad = torch.zeros(K, D, dtype=torch.float64)
        full_grad[k, free] = grad
        step = _newton_step(mean, joint, fitted, ridge, full_grad)
        assert torch.allclose(step[k, free], want, rtol=1e-7, atol=1e-9)
        assert float(step[k, ~free].abs().max()) == 0.0


def test_weights_no_draw_reached_stay_zero():
    cells, counts = problem(3, sampled=True)
    cells[0].probs[4:, 2] = 0.0  # the draws never ended in token 2 at length 4 or more
    cells[0].probs /= cells[0].probs.sum()
    cal = fit_calibrations(cells, counts, "length+end", 30.0, 7, 4)[0]
    assert cal.end_weights[4][2] == 0.0 and any(w != 0.0 for w in cal.end_weights[3])
