"""What the two GANs share: the minimax game of Goodfellow et al. (2014), algorithm 1, with the
non-saturating generator loss, and sampling from noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from arena import Generator, Range


class GeneratorDiscriminator(nn.Module):
    """The two players: ``generator`` maps noise to images in [0, 1], ``discriminator`` maps
    images to the logit of "real"."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent: int, shape: tuple[int, int, int]):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.latent = latent
        self.shape = tuple(shape)


def discriminator_loss(model: GeneratorDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))], the discriminator's side of the value function."""
    real_logits = model.discriminator(real)
    fake_logits = model.discriminator(fake)
    return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
        F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(model: GeneratorDiscriminator, fake: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): the non-saturating loss, strong gradients while D rejects the samples."""
    logits = model.discriminator(fake)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


class AdversarialGenerator(Generator):
    """Alternating updates: ``discriminator_steps`` steps of D, then one step of G, per batch."""

    likelihood = None
    #: ``epochs=0`` keeps the untrained model: the baseline a trained one has to beat.
    bounds = {"epochs": Range(0), "lr": Range(0, low_inclusive=False), "batch_size": Range(1),
              "latent": Range(1), "discriminator_steps": Range(1)}
    epochs: int
    batch_size: int
    discriminator_steps: int

    def noise(self, model: GeneratorDiscriminator, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise; DCGAN overrides it with uniform noise."""
        return torch.randn(n, model.latent, generator=generator)

    def optimizers(self, model: GeneratorDiscriminator) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        raise NotImplementedError

    def train(self, model, ctx):
        d_optimizer, g_optimizer = self.optimizers(model)
        device = next(model.parameters()).device

        def step(real: torch.Tensor) -> dict[str, float]:
            for _ in range(self.discriminator_steps):
                fake = model.generator(self.noise(model, len(real)).to(device)).detach()
                d_loss = discriminator_loss(model, real, fake)
                d_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                d_optimizer.step()
            g_loss = generator_loss(model, model.generator(self.noise(model, len(real)).to(device)))
            g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            g_optimizer.step()
            return {"discriminator_loss": d_loss.item(), "generator_loss": g_loss.item()}

        return ctx.run_epochs(model, step, epochs=self.epochs, batch_size=self.batch_size)

    def sample(self, model, n, generator):
        device = next(model.parameters()).device
        return model.generator(self.noise(model, n, generator).to(device))
