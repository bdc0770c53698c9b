"""Your own trained classifier as a defense: a factory that builds the network and a checkpoint
of its weights, evaluated like any other (RobustBench's ``load_model`` use case, without a hub)."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

import arena
from arena import Defense, InvalidInputError


class External(Defense):
    """A model you trained: -p external.model=MODULE:FUNCTION -p external.weights=FILE.

    ``model`` names a function that takes no argument and returns the network (an
    ``nn.Module`` taking images in [0, 1] and returning logits: input normalisation belongs to
    the model); ``weights`` its state dict, a ``.safetensors`` file or a ``.pt``/``.pth`` file
    saved with ``torch.save(model.state_dict(), ...)`` and loaded with ``weights_only=True`` (a
    pickled full model is refused). Nothing is trained. The model's identity is the factory and
    the SHA-256 of the weights, wherever the file lies.
    """

    name = "external"
    in_all = False
    bounds = {"model": arena.Pattern(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", "MODULE:FUNCTION (e.g. my_pkg.models:build)"),
              "weights": arena.Pattern(r".+\.(safetensors|pt|pth)", "a .safetensors, .pt or .pth file")}

    def __init__(self, model: str | None = None, weights: str | None = None) -> None:
        self.model = model
        self.weights = weights

    def _required(self) -> tuple[str, Path]:
        if not self.model or not self.weights:
            raise InvalidInputError("defense 'external' needs -p external.model=MODULE:FUNCTION (what builds your "
                                    "network) and -p external.weights=FILE (its .safetensors or .pt state dict)")
        path = Path(self.weights).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"defense 'external': no weights file at {path}")
        return self.model, path

    def identity(self) -> dict:
        from arena.provenance import file_sha256

        model, path = self._required()
        return {"model": model, "weights_sha256": file_sha256(path)}

    def build(self, dataset, ctx) -> nn.Module:
        factory, path = self._required()
        network = _factory(factory)()
        if not isinstance(network, nn.Module):
            raise InvalidInputError(f"defense 'external': {factory}() returned {type(network).__name__}, not an "
                                    "nn.Module")
        state = _state_dict(path)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise InvalidInputError(f"defense 'external': {path.name} does not fit {factory}(): {first}") from None
        return network

    def train(self, model, ctx):
        return None  # trained already


def _factory(spec: str):
    module, sep, attribute = spec.partition(":")
    if not sep or not module or not attribute:
        raise InvalidInputError(f"defense 'external': model={spec!r} is not MODULE:FUNCTION (e.g. my_pkg.models:build)")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"defense 'external': cannot import {spec} ({exc})") from None
    if not callable(found):
        raise InvalidInputError(f"defense 'external': {spec} is not a function")
    return found


def _state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise InvalidInputError(f"defense 'external': {path} cannot be read as safetensors ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInputError(f"defense 'external': {path.name} is not a plain state dict, refused unread: save "
                                f"model.state_dict(), not the model ({first[:120]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(f"defense 'external': {path.name} holds a {type(state).__name__}, not a state dict of "
                                "tensors: save model.state_dict()")
    return state


@arena.hookimpl
def register_defenses(register):
    register(External)
