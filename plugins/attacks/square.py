"""Square Attack (Andriushchenko et al. 2020): a score-based black-box attack by random search over
square-shaped updates."""

from __future__ import annotations

import math

import torch

import arena
from arena import Access, Attack

#: Iterations (on a 10,000-query scale) after which the square's area fraction p halves (§3 and
#: the authors' schedule: p_init, /2 after 10, /4 after 50, ... /512 after 8,000).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def area_fraction(p_init: float, iteration: int, budget: int, rescale: bool = True) -> float:
    """The fraction p of the image a square covers at ``iteration``: the schedule rescaled from
    10,000 queries to ``budget``, or (``rescale=False``) followed as it is for 10,000 queries and
    cut at the budget, as AutoAttack runs Square with 5,000 queries."""
    scaled = int(iteration / budget * 10000) if rescale else iteration
    return p_init / 2 ** sum(scaled > h for h in HALVINGS)


def margin(log_probs: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """The margin the attack drives below zero: z_y - max_{j≠y} z_j, or max_{j≠t} z_j - z_t
    targeted. Log-probabilities have the margins of the logits."""
    labels = y if target is None else target
    own = log_probs.gather(1, labels[:, None]).squeeze(1)
    best_other = log_probs.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return own - best_other if target is None else best_other - own


def _window(vh: torch.Tensor, vw: torch.Tensor, size: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Per image, the row and column offsets into a ``size``-square at (vh, vw), and its mask."""
    rows = torch.arange(height, device=vh.device)[None] - vh[:, None]
    cols = torch.arange(width, device=vw.device)[None] - vw[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return rows.clamp(0, size - 1), cols.clamp(0, size - 1), inside[:, None]


def _paste(patterns: torch.Tensor, vh, vw, height: int, width: int) -> torch.Tensor:
    """Place one (s, s) pattern per image at (vh, vw) in a zero (n, 1, height, width) canvas."""
    size = patterns.shape[-1]
    rows, cols, inside = _window(vh, vw, size, height, width)
    batch = torch.arange(len(patterns), device=patterns.device)[:, None, None]
    return torch.where(inside, patterns[batch, rows[:, :, None], cols[:, None, :]][:, None], 0.0)


def _random_corner(n: int, size: int, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randint(0, height - size + 1, (n,), device=device),
            torch.randint(0, width - size + 1, (n,), device=device))


def _random_signs(shape, device) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=device).float() * 2 - 1


def rectangle_mass(rows: int, cols: int, device=None) -> torch.Tensor:
    """M(r, s) of Algorithm 3: concentric rectangles around the centre, the k-th weighted 1/k²,
    normalised to unit L2 norm."""
    i = torch.arange(rows, device=device)[:, None]
    j = torch.arange(cols, device=device)[None, :]
    ring = torch.maximum((i - rows // 2).abs(), (j - cols // 2).abs())  # 0 at the centre
    rings = max(rows // 2 + 1, cols // 2 + 1)
    mass = sum(((ring <= k).float() / (k + 1) ** 2) for k in range(rings))
    return mass / mass.norm()


def pseudo_gaussian(size: int, n: int, device=None) -> torch.Tensor:
    """η of Algorithm 3 for ``n`` images: a (size, size) square of two rectangle masses of
    opposite sign, normalised, transposed at random per image."""
    half = size // 2
    square = torch.cat([rectangle_mass(half, size, device), -rectangle_mass(size - half, size, device)]) if half else \
        rectangle_mass(size, size, device)
    square = square / square.norm()
    patterns = square.expand(n, size, size).clone()
    flip = torch.rand(n, device=device) > 0.5
    patterns[flip] = patterns[flip].transpose(1, 2)
    return patterns


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


class Square(Attack):
    """Square Attack (Andriushchenko et al. 2020): random search that changes a random square of
    the image at each query and keeps the change when the margin loss falls.

    L-inf (Algorithms 1-2): starts from vertical stripes of ±eps and sets the square's pixels to
    x ± eps, one random sign per channel. L2 (Algorithm 3): starts from a grid of pseudo-Gaussian
    bumps and moves perturbation mass from one square into another, staying on the eps-sphere.
    The side of the square follows p, the area fraction, from ``p_init`` halving on the paper's
    schedule rescaled to the query budget the host sets (``rescale_schedule=false``: not
    rescaled, as in AutoAttack's standard version). A sample stops as soon as its margin is below
    zero; only the samples still running are queried.
    """

    name = "square"
    access = Access.SCORE_QUERY
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"p_init": arena.Range(0, 1, low_inclusive=False)}

    def __init__(self, p_init: float = 0.8, rescale_schedule: bool = True):
        self.p_init = p_init
        self.rescale_schedule = rescale_schedule

    def perturb(self, access, x, y, threat, target=None):
        n, channels, height, width = x.shape
        every = torch.arange(n, device=x.device)
        x_best = self._start(x, threat)
        loss = margin(access(x_best), y, target)
        for iteration in range(access.budget):
            rows = every[(loss > 0) & (access.remaining(every).to(x.device) > 0)]
            if len(rows) == 0:
                break
            p = area_fraction(self.p_init, iteration, access.budget, self.rescale_schedule)
            side = int(round(math.sqrt(p * height * width)))
            if threat.norm == "linf":
                candidate = self._linf_step(x[rows], x_best[rows], min(max(side, 1), height - 1), threat.eps)
            else:
                candidate = self._l2_step(x[rows], x_best[rows], side, threat.eps)
            new_loss = margin(access(candidate, index=rows), y[rows], None if target is None else target[rows])
            better = new_loss < loss[rows]
            x_best[rows[better]] = candidate[better]
            loss[rows[better]] = new_loss[better]
        return x_best

    def _start(self, x, threat):
        n, channels, height, width = x.shape
        if threat.norm == "linf":
            stripes = _random_signs((n, channels, 1, width), x.device)
            return (x + threat.eps * stripes).clamp(0.0, 1.0)
        size = height // 5 or 1
        offset = (height - size * 5) // 2 if height >= 5 else 0
        delta = torch.zeros_like(x)
        for top in range(offset, height - size + 1, size):
            for left in range(offset, width - size + 1, size):
                bump = pseudo_gaussian(size, n, x.device)[:, None] * _random_signs((n, channels, 1, 1), x.device)
                delta[:, :, top : top + size, left : left + size] += bump
        return (x + threat.eps * delta / _l2(delta)).clamp(0.0, 1.0)

    @staticmethod
    def _linf_step(x, x_best, side, eps):
        n, channels, height, width = x.shape
        vh, vw = _random_corner(n, side, height, width, x.device)
        inside = _window(vh, vw, side, height, width)[2]
        signs = _random_signs((n, channels, 1, 1), x.device)
        candidate = torch.where(inside, (x + eps * signs).clamp(0.0, 1.0), x_best)
        # A square that changes nothing wastes a query; the other sign changes it (Algorithm 2).
        unchanged = ((candidate - x_best).abs().flatten(1).amax(dim=1) < 1e-7)[:, None, None, None]
        flipped = torch.where(inside, (x - eps * signs).clamp(0.0, 1.0), x_best)
        return torch.where(unchanged, flipped, candidate)

    @staticmethod
    def _l2_step(x, x_best, side, eps):
        n, channels, height, width = x.shape
        side = min(max(side, 3), height - 1)
        side += side % 2 == 0  # odd, so the bump has a centre
        side = min(side, height)
        delta = x_best - x
        vh, vw = _random_corner(n, side, height, width, x.device)
        vh2, vw2 = _random_corner(n, side, height, width, x.device)
        first = _window(vh, vw, side, height, width)[2]
        second = _window(vh2, vw2, side, height, width)[2]
        norm_first = (delta * first).square().sum(dim=(2, 3), keepdim=True).sqrt()
        norm_both = (delta * (first | second)).square().sum(dim=(2, 3), keepdim=True).sqrt()
        room = (eps**2 - _l2(delta).square()).clamp_min(0.0) / channels
        bump = _paste(pseudo_gaussian(side, n, x.device), vh, vw, height, width) * _random_signs(
            (n, channels, 1, 1), x.device
        )
        update = bump + delta * first / (norm_first + 1e-12)
        update = update / ((update * first).square().sum(dim=(2, 3), keepdim=True).sqrt() + 1e-12)
        update = update * (room + norm_both.square()).sqrt()
        delta = torch.where(second, 0.0, delta)
        delta = torch.where(first, update, delta)
        return (x + eps * delta / (_l2(delta) + 1e-12)).clamp(0.0, 1.0)


@arena.hookimpl
def register_attacks(register):
    register(Square)
