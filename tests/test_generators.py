"""The generator plugins' maths: causal masks, the discrete decoder, the VAE bounds, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from arena.plugins import load_registry
from arena.training import BuildContext
from arena_plugins.datasets.digits import Digits
from arena_plugins.generators import logistic
from arena_plugins.generators.autoregressive import MaskedConv2d, from_levels, to_levels

SMALL = {
    "pixelcnn": {"channels": 16, "blocks": 2, "head": 16},
    "pixelrnn": {"channels": 16, "layers": 2, "head": 16},
    "image-transformer": {"dim": 16, "heads": 2, "layers": 2, "feedforward": 32, "block": 16, "memory": 8},
}


def build(name: str, **params):
    registry = load_registry()
    generator = registry.get("generator", name).create({**SMALL.get(name, {}), **params})
    dataset = Digits()
    torch.manual_seed(0)
    context = BuildContext(dataset, dataset.load(), torch.device("cpu"), seed=0)
    return generator, generator.build(dataset, context).eval()


@pytest.mark.parametrize("name", ["pixelcnn", "pixelrnn", "image-transformer"])
def test_autoregressive_outputs_are_causal(name):
    """The logits of pixel i do not change when pixels i, i+1, ... change, and do change when a
    neighbouring earlier pixel does (the model is not blind to its context)."""
    _, model = build(name)
    generator = torch.Generator().manual_seed(0)
    x = from_levels(torch.randint(0, 17, (4, 1, 8, 8), generator=generator), 17)
    with torch.no_grad():
        reference = model(x)
        for position in range(64):
            changed = x.clone().flatten(1)
            changed[:, position:] = from_levels(torch.randint(0, 17, (4, 64 - position), generator=generator), 17)
            logits = model(changed.view_as(x))
            row, column = divmod(position, 8)
            torch.testing.assert_close(logits[:, :, row, column], reference[:, :, row, column], atol=1e-5, rtol=0)
            if position > 0:  # the left neighbour, or the pixel above at the start of a row
                neighbour = position - 1 if column > 0 else position - 8
                earlier = x.clone().flatten(1)
                earlier[:, neighbour] = 1 - earlier[:, neighbour]
                moved = model(earlier.view_as(x))[:, :, row, column]
                assert (moved - reference[:, :, row, column]).abs().max() > 1e-4


def test_transformer_local_attention_forgets_beyond_its_memory():
    """Local 1D attention: a query sees its block and the memory before it, nothing earlier."""
    from arena_plugins.generators.transformer import local_causal_mask

    mask = local_causal_mask(12, block=4, memory=2)
    assert mask[9].nonzero().flatten().tolist() == [6, 7, 8, 9]  # block 8..11 from 8 back 2 positions
    assert mask[0].nonzero().flatten().tolist() == [0]
    assert not mask.triu(1).any()


@pytest.mark.parametrize("mask, visible", [("A", [(0, 0), (0, 1), (0, 2), (1, 0)]), ("B", [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)])])
def test_masked_convolution_kernels(mask, visible):
    conv = MaskedConv2d(mask, 1, 1, 3)
    assert sorted(map(tuple, conv.mask[0, 0].nonzero().tolist())) == visible


@pytest.mark.parametrize("name", ["pixelcnn", "pixelrnn", "image-transformer"])
def test_completion_keeps_the_known_pixels(name):
    generator, model = build(name)
    x = Digits().load().x_test[:3]
    with torch.no_grad():
        completed = generator.complete(model, x, 32, torch.Generator().manual_seed(0))
    assert torch.equal(completed[:, :, :4], x[:, :, :4])
    assert torch.equal(completed, from_levels(to_levels(completed, 17), 17))  # on the pixel grid


@pytest.mark.parametrize("levels", [17, 256])
def test_discretized_logistic_mixture_is_a_distribution(levels):
    generator = torch.Generator().manual_seed(levels)
    weights, means = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator) * 1.5
    log_scales = torch.randn(5, 3, generator=generator) * 2 - 2
    every = torch.arange(levels).repeat(5, 1)  # (5, levels): each pixel at every level
    expand = lambda t: t[:, None, :].expand(5, levels, 3)  # noqa: E731
    log_p = logistic.log_prob(every, expand(weights), expand(means), expand(log_scales), levels)
    torch.testing.assert_close(log_p.exp().sum(1), torch.ones(5), atol=1e-5, rtol=0)
    # Against the difference of logistic CDFs in float64 for one component.
    k, mean, scale = torch.tensor([3]), 0.1, math.exp(-1.0)
    centre = 2 * 3 / (levels - 1) - 1
    cdf = lambda v: 1 / (1 + math.exp(-(v - mean) / scale))  # noqa: E731
    expected = math.log(cdf(centre + 1 / (levels - 1)) - cdf(centre - 1 / (levels - 1)))
    got = logistic.log_prob(k, torch.zeros(1, 1), torch.full((1, 1), mean), torch.full((1, 1), -1.0), levels)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_discretized_logistic_samples_follow_their_probabilities():
    weights, means, log_scales = torch.tensor([[0.0, 1.0]]), torch.tensor([[-0.5, 0.6]]), torch.tensor([[-2.0, -1.5]])
    n = 20000
    drawn = logistic.sample(weights.expand(n, 2), means.expand(n, 2), log_scales.expand(n, 2), 17,
                            torch.Generator().manual_seed(0))
    frequencies = torch.bincount(drawn, minlength=17).double() / n
    probabilities = logistic.log_prob(torch.arange(17), weights.expand(17, 2), means.expand(17, 2),
                                      log_scales.expand(17, 2), 17).exp().double()
    assert (frequencies - probabilities).abs().max() < 0.015


def test_iwae_with_one_sample_is_the_elbo_and_more_samples_are_tighter():
    x = Digits().load().x_test[:40]
    _, model = build("vae", hidden=32)
    single, _ = build("vae", hidden=32, iwae_samples=1)
    many, _ = build("vae", hidden=32, iwae_samples=50)
    with torch.no_grad():
        torch.manual_seed(0)
        one = single.likelihood_estimates(model, x)
        torch.manual_seed(0)
        fifty = many.likelihood_estimates(model, x)
    torch.testing.assert_close(one["elbo"], one["iwae-1"])
    assert (fifty["iwae-50"] >= fifty["elbo"] - 1e-4).all()  # log-mean-exp >= mean, image by image
    assert fifty["iwae-50"].mean() > one["elbo"].mean()
    assert (fifty["iwae-50"] <= 0).all()  # a probability of discrete pixels


@pytest.mark.parametrize("name", ["pixelcnn", "vae", "gan", "dcgan"])
def test_sampling_is_seeded_and_in_range(name):
    generator, model = build(name)
    with torch.no_grad():
        first = generator.sample(model, 6, torch.Generator().manual_seed(5))
        again = generator.sample(model, 6, torch.Generator().manual_seed(5))
        other = generator.sample(model, 6, torch.Generator().manual_seed(6))
    assert first.shape == (6, 1, 8, 8) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)
