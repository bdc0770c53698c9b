"""The variational autoencoder (Kingma & Welling 2014) with a discrete decoder, scored by the
ELBO and the importance-weighted bound (Burda, Grosse & Salakhutdinov 2016)."""

from __future__ import annotations

import math

import torch
from torch import nn

import arena
from arena import Generator

from . import logistic
from .autoregressive import from_levels, to_levels

LOG_2PI = math.log(2 * math.pi)
#: Decoder passes per chunk when the importance-weighted bound is computed (bounds memory).
DECODES_PER_CHUNK = 4096


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + log_variance + (z - mean) ** 2 / log_variance.exp()).sum(-1)


class VAEModel(nn.Module):
    """MLP encoder q(z|x) = N(μ(x), diag σ²(x)) and MLP decoder p(x|z), a discretized mixture of
    logistics per pixel; prior p(z) = N(0, I). One tanh hidden layer each, as in the paper."""

    def __init__(self, levels: int, shape: tuple[int, int, int], hidden: int, latent: int, mixtures: int):
        super().__init__()
        self.levels, self.shape, self.latent, self.mixtures = levels, tuple(shape), latent, mixtures
        pixels = shape[0] * shape[1] * shape[2]
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, pixels * 3 * mixtures))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.encoder(2 * x - 1).chunk(2, dim=-1)
        return mean, log_variance

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture logits, centres and log-scales, each (..., pixels, mixtures)."""
        out = self.decoder(z).unflatten(-1, (-1, 3, self.mixtures))
        return out[..., 0, :], out[..., 1, :], out[..., 2, :]

    def reconstruction_log_prob(self, x_levels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per image; ``x_levels`` (N, pixels), ``z`` (..., N, latent)."""
        weights, means, log_scales = self.decode(z)
        return logistic.log_prob(x_levels.expand(weights.shape[:-1]), weights, means, log_scales, self.levels).sum(-1)

    def log_weights(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """log p(x, z_s) - log q(z_s|x) for ``samples`` draws z_s ~ q(z|x): (samples, N)."""
        x_levels = to_levels(x, self.levels).flatten(1)
        mean, log_variance = self.encode(from_levels(x_levels, self.levels))
        z = mean + (0.5 * log_variance).exp() * torch.randn(samples, *mean.shape, device=mean.device)
        prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        posterior = gaussian_log_density(z, mean, log_variance)
        return self.reconstruction_log_prob(x_levels, z) + prior - posterior


class VAE(Generator):
    """VAE (Kingma & Welling): reparameterised Gaussian encoder, discrete decoder; ELBO and IWAE-k."""

    name = "vae"
    likelihood = "bound"
    #: ``epochs=0`` keeps the untrained model: the baseline a trained one has to beat.
    bounds = {"hidden": arena.Range(1), "latent": arena.Range(1), "mixtures": arena.Range(1),
              "iwae_samples": arena.Range(1), "epochs": arena.Range(0), "lr": arena.Range(0, low_inclusive=False),
              "batch_size": arena.Range(1)}

    def __init__(self, hidden: int = 500, latent: int = 16, mixtures: int = 3, iwae_samples: int = 100,
                 epochs: int = 60, lr: float = 1e-3, batch_size: int = 64):
        self.hidden = hidden
        self.latent = latent
        self.mixtures = mixtures
        self.iwae_samples = iwae_samples
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def build(self, dataset, ctx):
        return VAEModel(dataset.levels, dataset.shape, self.hidden, self.latent, self.mixtures)

    def train(self, model, ctx):
        """Maximise the ELBO E_q[log p(x|z)] - KL(q(z|x) ‖ p(z)), the expectation by one
        reparameterised sample z = μ + σ ⊙ ε, the KL in closed form (the paper's estimator B)."""
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)

        def step(x: torch.Tensor) -> dict[str, float]:
            x_levels = to_levels(x, model.levels).flatten(1)
            mean, log_variance = model.encode(from_levels(x_levels, model.levels))
            z = mean + (0.5 * log_variance).exp() * torch.randn_like(mean)
            kl = 0.5 * (mean**2 + log_variance.exp() - 1 - log_variance).sum(-1)
            loss = (kl - model.reconstruction_log_prob(x_levels, z)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return {"negative_elbo": loss.item(), "kl": kl.mean().item()}

        return ctx.run_epochs(model, step, epochs=self.epochs, batch_size=self.batch_size)

    def likelihood_estimates(self, model, x):
        """The ELBO and IWAE-k from the same k importance samples per image: the ELBO is the
        mean of the log weights, IWAE-k their log-mean-exp, which is never below it."""
        chunk = max(1, DECODES_PER_CHUNK // self.iwae_samples)
        elbo, iwae = [], []
        for start in range(0, len(x), chunk):
            weights = model.log_weights(x[start : start + chunk], self.iwae_samples)
            elbo.append(weights.mean(0))
            iwae.append(torch.logsumexp(weights, 0) - math.log(self.iwae_samples))
        return {"elbo": torch.cat(elbo), f"iwae-{self.iwae_samples}": torch.cat(iwae)}

    def log_likelihood(self, model, x):
        return self.likelihood_estimates(model, x)[f"iwae-{self.iwae_samples}"]

    def sample(self, model, n, generator):
        """Ancestral sampling: z ~ N(0, I), then every pixel from p(x|z)."""
        device = next(model.parameters()).device
        z = torch.randn(n, model.latent, generator=generator).to(device)
        weights, means, log_scales = model.decode(z)
        drawn = logistic.sample(weights, means, log_scales, model.levels, generator)
        return from_levels(drawn, model.levels).view(n, *model.shape)


@arena.hookimpl
def register_generators(register):
    register(VAE)
