"""The discretized mixture of logistics (Salimans et al. 2017, PixelCNN++; Kingma et al. 2016):
a proper distribution over the pixel levels 0..L-1 of every pixel.

Level k sits at s_k = 2k/(L-1) - 1 in [-1, 1] and owns the bin [s_k - 1/(L-1), s_k + 1/(L-1)];
the first and last bins reach to -∞ and +∞, so the probabilities of the L levels sum to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Smallest log-scale: keeps a component from collapsing onto one level with infinite density.
MIN_LOG_SCALE = -7.0


def _log1mexp(delta: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-delta)) for delta > 0, accurate at both ends (Mächler 2012)."""
    delta = delta.clamp_min(1e-12)
    return torch.where(delta < math.log(2), torch.log(-torch.expm1(-delta)), torch.log1p(-torch.exp(-delta)))


def _log_sigmoid_difference(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """log(σ(high) - σ(low)) for high > low, using σ(h) - σ(l) = σ(-l) - σ(-h) on whichever
    side keeps both sigmoids small."""
    flip = (low + high) > 0
    upper = torch.where(flip, -low, high)
    lower = torch.where(flip, -high, low)
    log_upper, log_lower = F.logsigmoid(upper), F.logsigmoid(lower)
    return log_upper + _log1mexp(log_upper - log_lower)


def log_prob(levels_index: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
             levels: int) -> torch.Tensor:
    """log P(x = k) per pixel. ``levels_index``: (..., ) integers; ``weights``, ``means``,
    ``log_scales``: (..., K) mixture logits, centres in [-1, 1] units and log-scales."""
    centre = (2.0 * levels_index.float() / (levels - 1) - 1.0).unsqueeze(-1)
    half_bin = 1.0 / (levels - 1)
    inverse_scale = torch.exp(-log_scales.clamp_min(MIN_LOG_SCALE))
    low = (centre - half_bin - means) * inverse_scale
    high = (centre + half_bin - means) * inverse_scale
    interior = _log_sigmoid_difference(low, high)
    first = F.logsigmoid(high)  # P(x <= level 0)
    last = F.logsigmoid(-low)  # P(x >= level L-1)
    index = levels_index.unsqueeze(-1).expand_as(interior)
    component = torch.where(index == 0, first, torch.where(index == levels - 1, last, interior))
    return torch.logsumexp(F.log_softmax(weights, dim=-1) + component, dim=-1)


def sample(weights: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, levels: int,
           generator: torch.Generator) -> torch.Tensor:
    """Integer levels drawn from the mixture: a component, a logistic draw, then its bin."""
    shape = weights.shape[:-1]
    probabilities = weights.detach().float().cpu().softmax(-1).reshape(-1, weights.shape[-1])
    component = torch.multinomial(probabilities, 1, generator=generator).reshape(*shape, 1).to(weights.device)
    mean = means.gather(-1, component).squeeze(-1)
    scale = log_scales.clamp_min(MIN_LOG_SCALE).gather(-1, component).squeeze(-1).exp()
    uniform = torch.rand(shape, generator=generator).clamp(1e-5, 1 - 1e-5).to(weights.device)
    value = mean + scale * (torch.log(uniform) - torch.log1p(-uniform))
    return ((value + 1.0) / 2.0 * (levels - 1)).round().clamp(0, levels - 1).long()
