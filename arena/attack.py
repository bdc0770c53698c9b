"""The attack contract."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .access import Access
from .base import Plugin
from .errors import PluginError
from .threat import NORMS, ThreatModel


class Attack(Plugin):
    """An adversarial attack: turns a batch ``(x, y)`` into ``x_adv`` under a threat model.

    Subclasses set ``name``, ``access``, ``norms`` and ``supports_targeted``, take their
    hyperparameters as ``__init__`` keyword arguments with explicit defaults, and implement
    :meth:`perturb`. The host chooses the evaluation points, the targets and the device, and
    judges the result itself: it re-checks the budget and the pixel range, and re-classifies
    ``x_adv`` with the defense.
    """

    kind: ClassVar[str] = "attack"
    #: What the attack sees of the target (see :mod:`arena.access`).
    access: ClassVar[Access] = Access.WHITE_BOX
    #: Norms the attack supports: a subset of ``("linf", "l2")``.
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    #: Whether the attack can aim at a chosen target class.
    supports_targeted: ClassVar[bool] = False
    #: Whether the attack also works untargeted.
    supports_untargeted: ClassVar[bool] = True

    def perturb(
        self,
        access: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return adversarial versions of ``x`` (NCHW, in [0,1], on the run's device).

        ``access`` is the object of the declared access level; ``y`` are the true labels and
        ``target`` the host's target labels when ``threat.targeted`` (else ``None``). In targeted
        mode success means the defense predicts ``target``.
        """
        raise NotImplementedError

    def surrogate_architectures(self) -> tuple[str, ...]:
        """Architectures of the surrogate models a zero-query attack wants the host to train."""
        return ()

    @classmethod
    def validate_class(cls) -> None:
        super().validate_class()
        try:
            Access(cls.access)
        except ValueError:
            raise PluginError(
                f"attack {cls.name!r} declares access {cls.access!r}: use one of "
                + ", ".join(a.value for a in Access)
            ) from None
        if not cls.norms or any(n not in NORMS for n in cls.norms):
            raise PluginError(f"attack {cls.name!r} declares norms {cls.norms!r}: use a subset of {NORMS}")
        if not (cls.supports_targeted or cls.supports_untargeted):
            raise PluginError(f"attack {cls.name!r} supports neither targeted nor untargeted mode")
        if cls.perturb is Attack.perturb:
            raise PluginError(f"attack {cls.name!r} does not implement perturb()")

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        """What ``arena plugins`` shows for this attack."""
        modes = [m for m, ok in (("untargeted", cls.supports_untargeted), ("targeted", cls.supports_targeted)) if ok]
        return {"access": Access(cls.access).value, "norms": list(cls.norms), "modes": modes}
