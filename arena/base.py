"""What every plugin class shares: a name, and hyperparameters that are recorded with results."""

from __future__ import annotations

import inspect
import math
import re
from typing import Any, ClassVar

from .bounds import Bound, show
from .errors import ArenaError, InvalidInputError, PluginError

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SCALARS = (bool, int, float, str, type(None))


class Plugin:
    """Base of :class:`~arena.Attack`, :class:`~arena.Defense`, :class:`~arena.Generator` and
    :class:`~arena.Dataset`.

    Hyperparameters are the keyword arguments of ``__init__``: each must have an explicit
    default, be stored on the instance under the same name, and be a JSON scalar (or a tuple of
    them). The host records :meth:`hyperparameters` with every result and hashes them into its
    key, so two results computed with different settings are never confused.

    What values a hyperparameter accepts is declared in :attr:`bounds` and refined in
    :meth:`validate`; the host checks both when the plugin is created, before any work, and
    again after :meth:`resolve`.
    """

    #: Unique name within the plugin kind, e.g. ``"fgsm"``; lower case, digits, ``.-_``.
    name: ClassVar[str]
    #: ``"attack"``, ``"defense"``, ``"generator"`` or ``"dataset"``; set by each base class.
    kind: ClassVar[str] = "plugin"
    #: What each hyperparameter accepts, by name: :class:`~arena.Range` or :class:`~arena.Choice`.
    #: A subclass's entries are added to (and override) those of its base classes.
    bounds: ClassVar[dict[str, Bound]] = {}
    #: Whether ``all`` (``-a all``, ``-g all``, ...) selects the plugin; baselines say no and run
    #: only when named.
    in_all: ClassVar[bool] = True

    @classmethod
    def parameter_defaults(cls) -> dict[str, Any]:
        """The hyperparameters of ``__init__`` and their defaults."""
        if cls.__init__ is object.__init__:
            return {}
        params = inspect.signature(cls.__init__).parameters
        return {name: p.default for name, p in params.items() if name != "self"}

    def hyperparameters(self) -> dict[str, Any]:
        """The values this instance runs with, as recorded in the results database."""
        values = {}
        for name in self.parameter_defaults():
            value = getattr(self, name)
            values[name] = list(value) if isinstance(value, tuple) else value
        return values

    def identity(self) -> dict[str, Any]:
        """What identifies the model a defense or generator makes, with its code, dataset and
        seed: its hyperparameters, unless the plugin knows better (a defense that loads weights
        from a file names them by their SHA-256, not by where they lie)."""
        return self.hyperparameters()

    @classmethod
    def hyperparameter_bounds(cls) -> dict[str, Bound]:
        """The declared :attr:`bounds` of this class and its bases that name one of its
        hyperparameters (a subclass that drops a hyperparameter drops its bound)."""
        merged: dict[str, Bound] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get("bounds") or {})
        defaults = cls.parameter_defaults()
        return {name: bound for name, bound in merged.items() if name in defaults}

    def resolve(self, dataset: Any) -> None:
        """Replace defaults that depend on the dataset (``None`` meaning "the dataset's
        default") with concrete values, so that what is recorded is what ran."""

    def validate(self) -> None:
        """Refuse combinations of hyperparameters that :attr:`bounds` cannot express (say, one
        that must be a multiple of another) by raising :class:`~arena.ArenaError` with what is
        wrong. Called after :meth:`create` and again after :meth:`resolve`: a value the dataset
        decides is still ``None`` the first time."""

    def check_hyperparameters(self) -> None:
        """Check the values this instance holds against :attr:`bounds` and :meth:`validate`;
        the host calls it after :meth:`resolve`. Raise :class:`InvalidInputError` naming the
        plugin, the hyperparameter, the value and what is accepted."""
        _check_bounds(type(self), self.hyperparameters())
        try:
            self.validate()
        except (ArenaError, ValueError) as exc:
            prefix = f"{self.kind} {self.name!r}"
            message = str(exc)
            raise InvalidInputError(message if message.startswith(prefix) else f"{prefix}: {message}") from exc

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def validate_class(cls) -> None:
        """Check the class-level contract; raise :class:`PluginError` naming what is wrong."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PluginError(
                f"{cls.__qualname__} needs a class attribute `name` of lower-case letters, digits "
                f"and .-_ (got {name!r})"
            )
        if cls.__init__ is object.__init__:
            return
        for pname, p in inspect.signature(cls.__init__).parameters.items():
            if pname == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise PluginError(f"{cls.__qualname__}.__init__ takes *{pname}: list each hyperparameter")
            if p.default is p.empty:
                raise PluginError(
                    f"{cls.__qualname__}.__init__ parameter {pname!r} has no default: every "
                    "hyperparameter needs an explicit default"
                )
        defaults = cls.parameter_defaults()
        own = cls.__dict__.get("bounds") or {}
        if not isinstance(own, dict):
            raise PluginError(f"{cls.__qualname__}.bounds must be a dict of hyperparameter name to arena.Range/Choice")
        for pname, bound in own.items():
            if not isinstance(bound, Bound):
                raise PluginError(f"{cls.__qualname__}.bounds[{pname!r}] is {bound!r}, not an arena.Range or arena.Choice")
            if pname not in defaults:
                raise PluginError(f"{cls.__qualname__}.bounds names {pname!r}, which is not a hyperparameter")
        for pname, bound in cls.hyperparameter_bounds().items():
            default = defaults[pname]
            problem = None if default is None else bound.check(pname, default)
            if problem:
                raise PluginError(f"{cls.__qualname__}: the default {problem}")

    def validate_instance(self) -> None:
        """Check that every hyperparameter is stored under its own name as a JSON scalar."""
        for pname, value in self.hyperparameters().items():
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, _SCALARS) for v in items):
                raise PluginError(f"{self.kind} {self.name!r}: hyperparameter {pname}={value!r} is not a JSON scalar")
            if any(isinstance(v, float) and not math.isfinite(v) for v in items):
                raise PluginError(f"{self.kind} {self.name!r}: hyperparameter {pname}={value!r} is not finite")

    @classmethod
    def create(cls, overrides: dict[str, Any] | None = None) -> "Plugin":
        """Instantiate with ``overrides`` checked against the declared hyperparameters."""
        overrides = dict(overrides or {})
        defaults = cls.parameter_defaults()
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            valid = ", ".join(defaults) or "none"
            raise InvalidInputError(
                f"{cls.kind} {cls.name!r} has no hyperparameter {unknown[0]!r} (it takes: {valid})"
            )
        kwargs = {k: _coerce(cls, k, v, defaults[k]) for k, v in overrides.items()}
        _check_bounds(cls, {**defaults, **kwargs})  # before __init__ runs on a bad value
        try:
            instance = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{cls.kind} {cls.name!r}: {exc}") from exc
        try:
            instance.hyperparameters()
        except AttributeError as exc:
            raise PluginError(
                f"{cls.kind} {cls.name!r} does not store each hyperparameter under its own name ({exc})"
            ) from exc
        instance.validate_instance()
        instance.check_hyperparameters()
        return instance


def _check_bounds(cls: type[Plugin], values: dict[str, Any]) -> None:
    """Every value against its declared bound; ``None`` passes where the default is ``None``
    (the dataset decides it; :meth:`Plugin.resolve` fills it in and the host checks again)."""
    defaults = cls.parameter_defaults()
    for name, bound in cls.hyperparameter_bounds().items():
        value = values.get(name)
        if value is None and defaults[name] is None:
            continue
        problem = bound.check(name, value)
        if problem:
            raise InvalidInputError(f"{cls.kind} {cls.name!r}: {problem}")


def _coerce(cls: type[Plugin], key: str, value: Any, default: Any) -> Any:
    """Give a command-line value the type of the hyperparameter's default."""
    if default is None or value is None or isinstance(default, str):
        return value
    target = type(default)
    where = f"{cls.kind} {cls.name!r}: {key}={show(value)}"
    if target is bool:
        if isinstance(value, bool):
            return value
        raise InvalidInputError(f"{where} is not true or false")
    if target in (int, float):
        wanted = "a whole number" if target is int else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInputError(f"{where} is not {wanted}")
        if target is int and float(value) != int(value):
            raise InvalidInputError(f"{where} is not {wanted}")
        return target(value)
    if target in (tuple, list):
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return value
