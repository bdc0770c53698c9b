"""DCGAN (Radford, Metz & Chintala 2016): the architecture guidelines for convolutional GANs."""

from __future__ import annotations

import torch
from torch import nn

import arena
from arena.errors import PluginError

from .adversarial import AdversarialGenerator, GeneratorDiscriminator


class DCGANGenerator(nn.Module):
    """Noise → a matrix multiplication reshaped to (2c, H/4, W/4) → two fractionally-strided
    convolutions; batch norm and ReLU after every layer but the tanh output."""

    def __init__(self, latent: int, shape: tuple[int, int, int], width: int):
        super().__init__()
        channels, height, image_width = shape
        self.start = (2 * width, height // 4, image_width // 4)
        self.project = nn.Linear(latent, 2 * width * (height // 4) * (image_width // 4), bias=False)
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # tanh in [-1, 1] as in the paper, mapped onto the arena's [0, 1] images.
        return (self.body(self.project(z).view(len(z), *self.start)) + 1) / 2


class DCGANDiscriminator(nn.Module):
    """Two strided convolutions with LeakyReLU(0.2), batch norm on all but the input layer, no
    pooling and no fully connected hidden layer: the last feature map is flattened into one
    logit."""

    def __init__(self, shape: tuple[int, int, int], width: int):
        super().__init__()
        channels, height, image_width = shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * (height // 4) * (image_width // 4), 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(2 * x - 1)


def _paper_init(module: nn.Module) -> None:
    """Weights from N(0, 0.02); batch-norm scales from N(1, 0.02), shifts zero."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGAN(AdversarialGenerator):
    """DCGAN: strided convolutions, batch norm, ReLU/LeakyReLU, no pooling; Adam(2e-4, β1=0.5)."""

    name = "dcgan"
    bounds = {"width": arena.Range(1), "beta1": arena.Range(0, 1, high_inclusive=False)}

    def __init__(self, latent: int = 100, width: int = 64, discriminator_steps: int = 1, epochs: int = 60,
                 lr: float = 2e-4, beta1: float = 0.5, batch_size: int = 64):
        self.latent = latent
        self.width = width
        self.discriminator_steps = discriminator_steps
        self.epochs = epochs
        self.lr = lr
        self.beta1 = beta1
        self.batch_size = batch_size

    def build(self, dataset, ctx):
        _, height, width = dataset.shape
        if height % 4 or width % 4:
            raise PluginError(f"generator 'dcgan' needs image sides divisible by 4, got {height}x{width}")
        model = GeneratorDiscriminator(DCGANGenerator(self.latent, dataset.shape, self.width),
                                       DCGANDiscriminator(dataset.shape, self.width), self.latent, dataset.shape)
        model.apply(_paper_init)
        return model

    def noise(self, model, n, generator=None):
        """Uniform noise in [-1, 1], as in the paper."""
        return torch.rand(n, model.latent, generator=generator) * 2 - 1

    def optimizers(self, model):
        betas = (self.beta1, 0.999)
        return (torch.optim.Adam(model.discriminator.parameters(), lr=self.lr, betas=betas),
                torch.optim.Adam(model.generator.parameters(), lr=self.lr, betas=betas))


@arena.hookimpl
def register_generators(register):
    register(DCGAN)
