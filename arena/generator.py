"""The generative-model contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .base import Plugin
from .errors import PluginError

if TYPE_CHECKING:
    from .dataset import Dataset
    from .training import BuildContext

LIKELIHOOD_KINDS = ("exact", "bound", None)


class Generator(Plugin):
    """A generative model fitted on a dataset's training split.

    :meth:`build` returns the model, :meth:`train` fits it in place (the host seeds, caches and
    reloads it as for defenses), :meth:`sample` draws images in [0, 1] at the dataset's shape,
    and :meth:`log_likelihood`, when the model has one, returns log p(x) in nats per image for
    images on the dataset's pixel grid. ``likelihood`` says what that number is: ``"exact"``
    (autoregressive models), ``"bound"`` (a lower bound: VAE ELBO, IWAE) or ``None`` (GANs).

    The model returned by :meth:`build` carries whatever :meth:`sample` and
    :meth:`log_likelihood` need (the number of pixel levels, say), since they get only the
    model. The host calls them in eval mode, without gradients, after seeding torch's global
    random state; :meth:`sample` draws from the ``generator`` it is given. Autoregressive models
    may also implement :meth:`complete`, which the host uses for a grid of completions of
    half-images.
    """

    kind: ClassVar[str] = "generator"
    likelihood: ClassVar[str | None] = None

    def build(self, dataset: "Dataset", ctx: "BuildContext") -> nn.Module:
        raise NotImplementedError

    def train(self, model: nn.Module, ctx: "BuildContext") -> list[dict[str, Any]] | None:
        raise NotImplementedError

    def sample(self, model: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images, float32 NCHW in [0, 1], drawn with ``generator``'s randomness."""
        raise NotImplementedError

    def log_likelihood(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per image (exact or a lower bound, as ``likelihood`` declares)."""
        raise NotImplementedError

    def likelihood_estimates(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every estimate of log p(x) (nats per image) worth recording, by name.

        The default is the single value of :meth:`log_likelihood`. A model with several bounds
        (a VAE's ELBO and IWAE-k) returns each; all must be exact or lower bounds, so the host
        reports the largest as the model's likelihood.
        """
        return {str(self.likelihood): self.log_likelihood(model, x)}

    def complete(self, model: nn.Module, x: torch.Tensor, known: int, generator: torch.Generator) -> torch.Tensor:
        """Keep the first ``known`` pixels of each image of ``x`` (in raster order) and sample the
        rest from the model; optional, for models that generate pixel by pixel."""
        raise NotImplementedError

    @classmethod
    def completes(cls) -> bool:
        """Whether the class implements :meth:`complete`."""
        return cls.complete is not Generator.complete

    @classmethod
    def validate_class(cls) -> None:
        super().validate_class()
        if cls.likelihood not in LIKELIHOOD_KINDS:
            raise PluginError(f"generator {cls.name!r}: likelihood must be 'exact', 'bound' or None")
        for method in ("build", "train", "sample"):
            if getattr(cls, method) is getattr(Generator, method):
                raise PluginError(f"generator {cls.name!r} does not implement {method}()")
        if cls.likelihood is not None and cls.log_likelihood is Generator.log_likelihood:
            raise PluginError(
                f"generator {cls.name!r} declares a {cls.likelihood} likelihood but does not implement log_likelihood()"
            )

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {"likelihood": cls.likelihood, "completion": cls.completes()}
