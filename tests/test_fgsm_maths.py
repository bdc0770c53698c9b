"""FGSM and FGM against closed forms and against torchattacks."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

from arena import ThreatModel, WhiteBox
from arena.models import cnn
from arena_plugins.attacks.fgsm import FGM, FGSM
from arena_plugins.datasets.digits import Digits


def linear_model(weights: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weights.shape[1], weights.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weights)
    return model.eval().requires_grad_(False)


@pytest.fixture
def two_class():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(2, 64, generator=generator)
    x = torch.full((6, 1, 8, 8), 0.5)  # mid-grey: no clipping at eps <= 0.5
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    return weights, x, y


def test_fgsm_is_the_sign_of_the_weight_difference(two_class):
    # For a linear model, grad_x CE = p_other * (w_other - w_y): FGSM moves every pixel by eps
    # in the direction sign(w_other - w_y), the eta = eps * sign(w) construction of eq. 8.1.
    weights, x, y = two_class
    x_adv = FGSM().perturb(WhiteBox(linear_model(weights)), x, y, ThreatModel("linf", 0.1))
    other = 1 - y
    expected = x + 0.1 * torch.sign(weights[other] - weights[y]).view_as(x)
    assert torch.equal(x_adv, expected)


def test_targeted_fgsm_moves_toward_the_target(two_class):
    weights, x, y = two_class
    target = 1 - y
    x_adv = FGSM().perturb(WhiteBox(linear_model(weights)), x, y, ThreatModel("linf", 0.1, True), target)
    expected = x + 0.1 * torch.sign(weights[target] - weights[y]).view_as(x)
    assert torch.equal(x_adv, expected)


def test_fgm_is_the_normalised_weight_difference(two_class):
    weights, x, y = two_class
    x_adv = FGM().perturb(WhiteBox(linear_model(weights)), x, y, ThreatModel("l2", 0.5))
    direction = (weights[1 - y] - weights[y]).view_as(x)
    expected = x + 0.5 * direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)
    assert torch.allclose((x_adv - x).flatten(1).norm(dim=1), torch.tensor(0.5), atol=1e-6)


def test_multiclass_gradient_matches_closed_form():
    # grad_x sum CE = W^T (softmax(Wx) - onehot(y)) for a bias-free linear model.
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(10, 64, generator=generator)
    x = torch.rand(5, 1, 8, 8, generator=generator)
    y = torch.tensor([3, 1, 4, 1, 5])
    grad = WhiteBox(linear_model(weights)).gradient(x, y)
    probs = torch.softmax(x.flatten(1) @ weights.T, dim=1)
    expected = (probs - torch.nn.functional.one_hot(y, 10).float()) @ weights
    torch.testing.assert_close(grad.flatten(1), expected, rtol=1e-5, atol=1e-6)


def test_fgsm_clips_to_the_image_range():
    weights = torch.ones(2, 64)
    weights[1] = -1
    x = torch.zeros(1, 1, 8, 8)
    x_adv = FGSM().perturb(WhiteBox(linear_model(weights)), x, torch.tensor([0]), ThreatModel("linf", 0.3))
    assert x_adv.min() >= 0 and torch.equal(x_adv, torch.zeros_like(x))  # pushed below 0, clipped back


def test_fgsm_matches_torchattacks_elementwise():
    torch.manual_seed(0)
    model = cnn((1, 8, 8), 10)
    splits = Digits().load()
    x, y = splits.x_test[:128], splits.y_test[:128]
    # A few optimiser steps so that gradients are not symmetric at initialisation.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(splits.x_train[:256]), splits.y_train[:256])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().requires_grad_(False)
    for eps in (0.05, 0.2):
        ours = FGSM().perturb(WhiteBox(model), x, y, ThreatModel("linf", eps))
        theirs = torchattacks.FGSM(model, eps=eps)(x, y)
        assert torch.equal(ours, theirs)
        target = (y + 1) % 10
        ours_t = FGSM().perturb(WhiteBox(model), x, y, ThreatModel("linf", eps, True), target)
        peer = torchattacks.FGSM(model, eps=eps)
        peer.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
        assert torch.equal(ours_t, peer(x, y))
