"""FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive
boundary attack", ICML): the targeted Fast Adaptive Boundary attack of AutoAttack's standard
version.

FAB looks for the smallest perturbation that crosses the decision boundary. At each step it
linearises the boundary between the true class and the class it aims at, projects both the
current iterate and the original image onto that hyperplane (the minimal-norm step inside the
image box), and moves to a convex combination of the two projections, extrapolated a little
beyond the boundary. Once an iterate is misclassified it is remembered if it is the closest one
yet, and the iterate is pulled back towards the original image.
"""

from __future__ import annotations

import torch

import arena
from arena import Access, Attack


def hyperplane_step(points: torch.Tensor, w: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """Per row, the step ``d`` of least ``norm`` (``"linf"`` or ``"l2"``) with ``w·(p + d) = b`` and
    ``p + d`` in the box ``[0, 1]^D``; where the box does not reach the hyperplane, the box's
    corner furthest towards it (the step that comes closest). ``points`` and ``w`` are ``(n, D)``.

    With ``v = ±w`` oriented towards the hyperplane and ``r_i`` the room coordinate ``i`` has to
    its bound in the direction of ``v_i``, the steps that stay in the box are, for linf,
    ``d_i = sign(v_i)·min(s, r_i)`` and, for l2 (the problem's KKT conditions),
    ``d_i = sign(v_i)·min(s·|v_i|, r_i)``; ``v·d`` grows piecewise linearly with ``s``,
    ``F(s) = sum_i c_i·min(s, l_i)`` (linf: ``c_i = |v_i|``, ``l_i = r_i``; l2: ``c_i = v_i²``,
    ``l_i = r_i/|v_i|``), so the least ``s`` with ``F(s) = |b - w·p|`` is found exactly from the
    sorted breakpoints ``l_i``.
    """
    gap = b - (w * points).sum(dim=1)
    v = w * torch.where(gap >= 0, 1.0, -1.0).to(w.dtype)[:, None]
    target = gap.abs()
    magnitude = v.abs()
    # As the authors' projections: for l2 a coordinate whose weight is below 1e-8 stays put (its
    # breakpoint r_i/|v_i| would be huge), for linf only an exact zero does.
    moving = magnitude > (1e-8 if norm == "l2" else 0.0)
    room = torch.where(v > 0, 1.0 - points, points).clamp_min(0.0) * moving
    if norm == "linf":
        weight, limit = magnitude, room
    else:
        weight = magnitude**2
        limit = torch.where(moving, room / magnitude.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(room))
    limit_sorted, order = limit.sort(dim=1)
    weight_sorted = weight.gather(1, order)
    # F at breakpoint k: the coordinates before k saturated, the rest moving at slope weight.
    saturated = torch.cumsum(weight_sorted * limit_sorted, dim=1) - weight_sorted * limit_sorted
    slope = weight_sorted.flip(1).cumsum(dim=1).flip(1)
    reached = saturated + limit_sorted * slope
    below = (reached < target[:, None]).sum(dim=1)  # breakpoints F has not yet reached the target at
    feasible = below < points.shape[1]
    k = below.clamp(max=points.shape[1] - 1)[:, None]
    s = (target - saturated.gather(1, k).squeeze(1)) / slope.gather(1, k).squeeze(1).clamp_min(torch.finfo(w.dtype).tiny)
    s = torch.where(feasible, s, torch.full_like(s, torch.inf))[:, None]
    size = torch.minimum(s, limit) if norm == "linf" else torch.minimum(s * magnitude, room)
    return torch.where(moving, torch.sign(v) * size, torch.zeros_like(size))


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


class FAB(Attack):
    """FAB-T (Croce & Hein 2020), as AutoAttack's standard version runs it: for each of the
    ``target_classes`` most likely wrong classes of the clean image in turn (the second most
    likely first), FAB against the linearised boundary between the true class and that one, on
    the points no earlier class fooled within the budget. Success is any misclassification with a
    perturbation of at most eps: an untargeted attack with targeted boundaries.

    One step from iterate ``x_k`` (with ``x_0`` the clean image): the boundary
    ``z_t(x) - z_y(x) = 0`` is linearised at ``x_k``; ``d_k`` and ``d_0`` are the least
    perturbations of ``x_k`` and ``x_0`` onto it in the box; ``alpha = min(|d_k| / (|d_k| + |d_0|),
    alpha_max)`` and ``x_{k+1} = clip((1 - alpha)·(x_k + eta·d_k) + alpha·(x_0 + eta·d_0))``.
    A misclassified iterate is kept if it is the smallest yet, and replaced by
    ``x_0 + beta·(x_{k+1} - x_0)``. Restarts after the first start from a random point at
    distance eps/2 (the paper's random restarts).

    Defaults are AutoAttack's standard FAB-T: 9 target classes, 100 iterations, one start,
    alpha_max 0.1, eta 1.05, beta 0.9. With ``early_stop`` a sample leaves once it has an
    adversarial point within eps; without it, FAB keeps shrinking the perturbation for all
    iterations, as the reference does (the verdict within eps is the same).
    """

    name = "fab"
    access = Access.WHITE_BOX
    steps_parameter = "iterations"  # what `arena check` doubles to test convergence
    norms = ("linf", "l2")
    supports_targeted = False
    bounds = {"iterations": arena.Range(1), "restarts": arena.Range(1), "target_classes": arena.Range(1),
              "alpha_max": arena.Range(0, 1), "eta": arena.Range(1), "beta": arena.Range(0, 1)}

    def __init__(self, iterations: int = 100, restarts: int = 1, target_classes: int = 9, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9, early_stop: bool = True):
        self.iterations = iterations
        self.restarts = restarts
        self.target_classes = target_classes
        self.alpha_max = alpha_max
        self.eta = eta
        self.beta = beta
        self.early_stop = early_stop

    def perturb(self, access, x, y, threat, target=None):
        with torch.no_grad():
            logits = access.logits(x)
        ranked = logits.argsort(dim=1, descending=True)
        x_adv = x.clone()
        rows = (logits.argmax(dim=1) == y).nonzero().flatten()  # misclassified points need no attack
        for k in range(1, min(self.target_classes, ranked.shape[1] - 1) + 1):
            for restart in range(self.restarts):
                if len(rows) == 0:
                    return x_adv
                found, size = self._run(access, x[rows], y[rows], ranked[rows, k], threat, restart > 0)
                fooled = size <= threat.eps
                x_adv[rows[fooled]] = arena.project(x[rows[fooled]], found[fooled], threat)
                rows = rows[~fooled]
        return x_adv

    def _boundary(self, access, x, y, aim):
        """Logits at ``x``, and per sample ``z_aim - z_y`` and its gradient (one pass each way;
        against a randomized model both from the same average over the host's EOT draws)."""

        def margin(logits, labels):
            return logits.gather(1, aim[:, None]).squeeze(1) - logits.gather(1, labels[:, None]).squeeze(1)

        logits, grad = access.logits_and_gradient(x, y, loss=lambda logits, labels: margin(logits, labels).sum())
        return logits, margin(logits, y).detach(), grad

    def _run(self, access, x0, y, aim, threat, random_start):
        """One FAB run aimed at ``aim``: the smallest misclassified point found per sample and its
        size (``inf`` where none was found)."""
        norm, eps, n = threat.norm, threat.eps, len(x0)
        shape = (-1, *([1] * (x0.dim() - 1)))
        x1 = x0.clone()
        if random_start:
            if norm == "linf":
                t = 2 * torch.rand_like(x0) - 1
                t = t / t.flatten(1).abs().amax(dim=1).clamp_min(1e-12).view(shape)
            else:
                t = torch.randn_like(x0)
                t = t / t.flatten(1).norm(p=2, dim=1).clamp_min(1e-12).view(shape)
            x1 = (x0 + 0.5 * eps * t).clamp(0.0, 1.0)
        best, size = x0.clone(), torch.full((n,), torch.inf, device=x0.device)
        logits, f, grad = self._boundary(access, x1, y, aim)
        rows = torch.arange(n, device=x0.device)
        for _ in range(self.iterations):
            if len(rows) == 0:
                break
            xr, x0r, m = x1[rows], x0[rows], len(rows)
            w = grad[rows].flatten(1)
            b = (w * xr.flatten(1)).sum(dim=1) - f[rows]  # the linearised boundary: w·z = b
            steps = hyperplane_step(torch.cat((xr.flatten(1), x0r.flatten(1))), torch.cat((w, w)), torch.cat((b, b)), norm)
            lengths = _norms(steps, norm).clamp_min(1e-8)
            d1, d0 = steps[:m].view_as(xr), steps[m:].view_as(xr)
            alpha = (lengths[:m] / (lengths[:m] + lengths[m:])).clamp(0.0, self.alpha_max).view(shape)
            x_next = ((xr + self.eta * d1) * (1 - alpha) + (x0r + self.eta * d0) * alpha).clamp(0.0, 1.0)
            out, f_next, g_next = self._boundary(access, x_next, y[rows], aim[rows])
            wrong = out.argmax(dim=1) != y[rows]
            distance = _norms(x_next - x0r, norm)
            closer = wrong & (distance < size[rows])
            best[rows[closer]], size[rows[closer]] = x_next[closer], distance[closer]
            if wrong.any():  # back towards the clean image, and the boundary seen from there
                x_next[wrong] = x0r[wrong] + self.beta * (x_next[wrong] - x0r[wrong])
                keep = wrong & ~(self.early_stop & (size[rows] <= eps))
                if keep.any():
                    _, f_next[keep], g_next[keep] = self._boundary(access, x_next[keep], y[rows[keep]], aim[rows[keep]])
            x1[rows], f[rows], grad[rows] = x_next, f_next, g_next
            if self.early_stop:
                rows = rows[size[rows] > eps]
        return best, size


@arena.hookimpl
def register_attacks(register):
    register(FAB)
