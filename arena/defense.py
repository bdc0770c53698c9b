"""The defense contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from .base import Plugin

if TYPE_CHECKING:
    from .dataset import Dataset
    from .training import BuildContext


class Defense(Plugin):
    """Builds the classifier that attacks are run against.

    :meth:`build` returns the (untrained) model, :meth:`train` trains it in place. The host
    seeds both, caches the trained weights (safetensors, keyed by a hash of the plugin version
    and code, hyperparameters, dataset and seed) and on a cache hit calls only :meth:`build` before
    loading the weights. A defense that wraps another one (an input transformation, say)
    asks the context for the trained inner model in :meth:`build` and leaves :meth:`train`
    empty. Models take images in [0, 1] and return logits.
    """

    kind: ClassVar[str] = "defense"
    #: False when identical forward passes may give different outputs (randomized defenses).
    deterministic: ClassVar[bool] = True

    def build(self, dataset: "Dataset", ctx: "BuildContext") -> nn.Module:
        """The model architecture; the default is the host's classifier for this dataset."""
        return ctx.default_classifier()

    def train(self, model: nn.Module, ctx: "BuildContext") -> list[dict[str, Any]] | None:
        """Train ``model`` in place on ``ctx.splits``; return the per-epoch history."""
        return None

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {"deterministic": cls.deterministic}
