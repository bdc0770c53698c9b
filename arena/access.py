"""What an attack is allowed to know about its target, enforced by the host.

An attack declares one :class:`Access` level and receives the matching object:

- ``white-box``: :class:`WhiteBox`, the model itself (frozen weights, eval mode) and its input
  gradients;
- ``score-query``: :class:`ScoreOracle`, log-probabilities for queried inputs, counted per sample
  against a budget; no weights, no gradients;
- ``label-query``: :class:`LabelOracle`, only the predicted class, counted the same way;
- ``zero-query``: :class:`TransferAccess`, surrogate models the host trained on the training
  split; nothing of the target at all.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AccessError, QueryBudgetExceeded
from .levels import Access


class PassCounter:
    """Counts images sent forward and backward through a model."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0


class CountingModel(nn.Module):
    """Wraps a model to count forward and backward passes, per image."""

    def __init__(self, model: nn.Module, counter: PassCounter) -> None:
        super().__init__()
        self.model = model
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        batch = x.shape[0]
        self.counter.forward += batch
        if out.requires_grad:
            counter = self.counter

            def count_backward(grad: torch.Tensor) -> torch.Tensor:
                counter.backward += batch
                return grad

            out.register_hook(count_backward)
        return out


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class WhiteBox:
    """Full access to a differentiable model: ``model``, ``logits(x)`` and ``gradient(...)``.

    The weights are frozen (``requires_grad=False``) and the model is in eval mode; an attack
    needs gradients with respect to its input only. Against a randomized model the host sets
    ``eot_samples`` above 1, and :meth:`gradient` returns the expectation over transformation
    (the mean of that many gradients, each from a fresh forward pass); ``model`` and ``logits``
    give one draw per call. Against a model with non-differentiable input transforms the host
    has switched them to BPDA (straight-through) for the duration of the attack.
    """

    access = Access.WHITE_BOX

    def __init__(self, model: nn.Module, counter: PassCounter | None = None, eot_samples: int = 1) -> None:
        self.counter = counter or PassCounter()
        self.model = CountingModel(model, self.counter)
        self.eot_samples = eot_samples

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits for ``x``."""
        return self.model(x)

    def gradient(self, x: torch.Tensor, labels: torch.Tensor, loss: Loss | None = None) -> torch.Tensor:
        """Gradient of ``loss(logits, labels)`` (default: summed cross-entropy) with respect to ``x``.

        The sum makes each sample's gradient independent of the batch size. With
        ``eot_samples`` > 1 it is the mean over that many forward and backward passes.
        """
        return self.logits_and_gradient(x, labels, loss)[1]

    def logits_and_gradient(
        self, x: torch.Tensor, labels: torch.Tensor, loss: Loss | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits at ``x`` and the gradient of :meth:`gradient` from the same passes (one
        forward and one backward, or ``eot_samples`` of each, whose logits and gradients are
        averaged): iterative attacks read from the logits which samples are already fooled."""
        loss = loss or _summed_cross_entropy
        logits_sum, grad_sum = None, torch.zeros_like(x)
        with torch.enable_grad():
            for _ in range(self.eot_samples):
                inputs = x.detach().requires_grad_(True)
                logits = self.model(inputs)
                (grad,) = torch.autograd.grad(loss(logits, labels), inputs)
                logits_sum = logits.detach() if logits_sum is None else logits_sum + logits.detach()
                grad_sum += grad
        return logits_sum / self.eot_samples, (grad_sum / self.eot_samples).detach()


def _summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="sum")


class _Oracle:
    """Query access to a model: a per-sample query count under a budget the host enforces."""

    access: Access

    def __init__(self, model: nn.Module, batch_size: int, budget: int, chunk: int = 256) -> None:
        # Kept in a closure, not an attribute: query attacks must not reach the weights. The
        # model sees at most ``chunk`` inputs at a time, however many one query holds, so an
        # attack asking thousands of points at once costs the host no more memory than a batch.
        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                if len(x) <= chunk:
                    return model(x)
                return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])

        self._predict = predict
        self.budget = int(budget)
        self.queries = torch.zeros(batch_size, dtype=torch.long)

    def remaining(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Queries left per sample (for ``index`` rows of the batch, or all)."""
        left = self.budget - self.queries
        return left if index is None else left[index.cpu()]

    def _logits(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        self._count(x, index)
        return self._predict(x.detach())

    def _count(self, x: torch.Tensor, index: torch.Tensor | None) -> None:
        """Check a query against the batch and the budget, then count it."""
        if x.requires_grad:
            raise AccessError(f"a {self.access} oracle returns no gradients: query it with detached inputs")
        if index is None:
            if x.shape[0] != self.queries.shape[0]:
                raise AccessError(
                    f"the oracle got {x.shape[0]} inputs for a batch of {self.queries.shape[0]}: "
                    "pass `index`, the batch rows the inputs belong to"
                )
            rows = torch.arange(x.shape[0])
        else:
            rows = index.detach().cpu().long()
            if rows.shape[0] != x.shape[0]:
                raise AccessError(f"`index` names {rows.shape[0]} rows for {x.shape[0]} inputs")
        counts = torch.bincount(rows, minlength=self.queries.shape[0])
        if bool(((self.queries + counts) > self.budget).any()):
            raise QueryBudgetExceeded(
                f"the attack asked for more than {self.budget} queries for a sample; check "
                "`oracle.remaining()` before querying"
            )
        self.queries += counts

    def __getattr__(self, item: str):
        if item in {"model", "parameters", "state_dict", "gradient", "weights", "logits"}:
            raise AccessError(
                f"a {self.access} attack cannot read the target's {item}: it only sees the "
                "oracle's answers; declare access='white-box' if the attack needs the model"
            )
        raise AttributeError(item)


class ScoreOracle(_Oracle):
    """Score-based black box: ``oracle(x, index=None)`` returns log-probabilities.

    Log-probabilities carry the same margins as logits (log p_i - log p_j = z_i - z_j), which is
    what score-based attacks such as Square use.
    """

    access = Access.SCORE_QUERY

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return F.log_softmax(self._logits(x, index).float(), dim=1)


class LabelOracle(_Oracle):
    """Decision-based black box: ``oracle(x, index=None)`` returns predicted labels only."""

    access = Access.LABEL_QUERY

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self._logits(x, index).argmax(dim=1)


class TransferAccess:
    """Zero-query access: white-box surrogates trained by the host; the target is out of reach.

    ``surrogates`` maps each architecture name the attack asked for to a :class:`WhiteBox`.
    """

    access = Access.ZERO_QUERY

    def __init__(self, surrogates: dict[str, WhiteBox]) -> None:
        self.surrogates = dict(surrogates)

    def __getattr__(self, item: str):
        if item in {"model", "oracle", "logits", "gradient"}:
            raise AccessError(
                f"a zero-query attack cannot use the target's {item}: it only gets the surrogate "
                "models in `access.surrogates`"
            )
        raise AttributeError(item)
