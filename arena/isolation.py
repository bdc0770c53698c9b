"""Attacks run in a worker process that holds only what their access level grants.

The host never hands an attack one of its own objects. Each evaluation of a pairing runs in a
worker process started with multiprocessing's ``forkserver`` start method (a clean server
process, which never saw a model, a dataset or the store, forks each worker). A worker serves
one attack class only: after a clean pairing it waits for that attack's next pairing in the same
run, re-seeded and sent the attack again, so that its kernels stay warm; a worker whose pairing
failed, timed out or changed its model copy is never reused. For each pairing the host sends:

- the attack instance, serialised with cloudpickle (so that plugins registered in-process, not
  only installed ones, can be sent);
- for a white-box attack, a *copy* of the defense model; for a zero-query attack, copies of its
  surrogates; for a score- or label-query attack nothing of the model at all: its oracle forwards
  each query to the host, which answers with its own model and counts queries itself;
- per batch, copies of ``x``, ``y``, the threat model and the targets.

Every message between the two is a JSON header followed by raw array bytes (:func:`send`,
:func:`decode`). The host never unpickles what a worker sends: what comes back is a plain
tensor built from the bytes the attack produced, which the host then checks against its own
``x`` and threat model. Whatever an attack does to what it was given (moving ``x`` in place,
zeroing weights, ``model.train()``, raising ``threat.eps``, returning a tensor subclass) stays in
its worker, out of every other attack's reach. A worker that runs past ``--timeout`` or dies is killed and its pairing recorded as
failed.

One module on purpose, though longer than most: everything that crosses the process boundary
(the fork server, the worker loop, the message format and its decoding) is audited together.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import time
import traceback
from contextlib import ExitStack
from multiprocessing.connection import Connection
from typing import Any, Sequence

import cloudpickle
import numpy
import torch
from torch import nn

from . import errors
from .access import Access, LabelOracle, PassCounter, ScoreOracle, TransferAccess, WhiteBox, _Oracle
from .errors import AccessError, ArenaError, PluginError
from .fast import FastModel, tf32_matmul
from .integrity import fingerprint, frozen_state_problems
from .threat import ThreatModel
from .transforms import straight_through

#: Array types a message may carry (numpy names); anything else is a protocol error.
DTYPES = frozenset({"float32", "float64", "float16", "int64", "int32", "uint8", "bool"})
#: Seconds a worker gets to exit after ``close`` before it is killed.
CLOSE_GRACE = 5.0


class ProtocolError(PluginError):
    """A worker sent a message the host cannot read."""


class PairingTimeout(ArenaError):
    """An attack ran past the pairing's time limit."""


class WorkerError(Exception):
    """A plugin raised in its worker process: its type name, message and traceback, as text."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.traceback_text = traceback_text


Message = tuple[str, dict[str, Any], list[torch.Tensor]]


def send(conn: Connection, op: str, meta: dict[str, Any] | None = None, tensors: Sequence[torch.Tensor] = ()) -> None:
    """One message: a 4-byte header length, a JSON header, then each tensor's raw bytes."""
    arrays = [torch.Tensor.numpy(t.detach().cpu().contiguous()) for t in tensors]
    header = json.dumps({"op": op, "meta": meta or {}, "arrays": [[a.dtype.name, list(a.shape)] for a in arrays]})
    encoded = header.encode()
    conn.send_bytes(b"".join([len(encoded).to_bytes(4, "little"), encoded, *(a.tobytes() for a in arrays)]))


def decode(data: bytes) -> Message:
    """Read a message without trusting it: only the listed dtypes, exact byte counts, no pickle."""
    try:
        size = int.from_bytes(data[:4], "little")
        header = json.loads(data[4 : 4 + size])
        op, meta, specs = header["op"], header["meta"], header["arrays"]
        if not isinstance(op, str) or not isinstance(meta, dict) or not isinstance(specs, list):
            raise ValueError("malformed header")
        offset, tensors = 4 + size, []
        for dtype_name, shape in specs:
            if dtype_name not in DTYPES or not all(type(d) is int and d >= 0 for d in shape):
                raise ValueError(f"array of dtype {dtype_name!r} and shape {shape!r}")
            dtype = numpy.dtype(dtype_name)
            count = math.prod(shape)
            if offset + count * dtype.itemsize > len(data):
                raise ValueError("arrays longer than the message")
            array = numpy.frombuffer(data, dtype, count, offset).reshape(shape).copy()
            tensors.append(torch.from_numpy(array))
            offset += count * dtype.itemsize
        if offset != len(data):
            raise ValueError("trailing bytes")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"unreadable message from an attack worker ({exc})") from None
    return op, meta, tensors


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


_context: Any = None
#: Modules the fork server imports once, so that no worker pays for them.
PRELOAD = ["arena.isolation", "arena.judging", "arena.pairings"]


def context() -> Any:
    """The multiprocessing context of attack workers; the fork server preloads torch and Arena."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context(_start_method())
        if _start_method() == "forkserver":
            # Each worker re-imports the host's main module (multiprocessing does, to find what
            # was defined there); with what the CLI and the benchmarks import already in the
            # server, that costs milliseconds rather than a start-up per pairing.
            _context.set_forkserver_preload(PRELOAD)
    return _context


_spare: tuple[Any, Connection] | None = None
#: Workers asked to exit, with the time after which they are killed.
_closing: list[tuple[Any, float]] = []


#: Idle workers by attack class, each kept for that attack's next pairing (see :func:`release_workers`).
_idle: dict[str, tuple[Any, Connection]] = {}


def _attack_key(attack: Any) -> str:
    cls = type(attack)
    return f"{cls.__module__}.{cls.__qualname__}"


def release_workers() -> None:
    """Close every idle worker (a session does when its runs end)."""
    while _idle:
        _, (process, conn) = _idle.popitem()
        _retire(process, conn)


def _stop(process: Any) -> None:
    """Kill ``process`` if it still runs, and reap it."""
    if process.is_alive():
        process.kill()
    process.join(timeout=CLOSE_GRACE)


def _retire(process: Any, conn: Connection) -> None:
    if process.is_alive():
        try:
            send(conn, "close")
        except (BrokenPipeError, ConnectionError, OSError):
            pass
        _closing.append((process, time.monotonic() + CLOSE_GRACE))
    conn.close()


def _worker_for(attack: Any) -> tuple[Any, Connection]:
    """The idle worker that served this attack's class before, or a fresh one. A worker serves
    one attack class only, so that nothing one attack leaves in it can reach another's results,
    and it keeps its kernels warm for that attack's next pairing (each pairing is re-seeded)."""
    taken = _idle.pop(_attack_key(attack), None)
    if taken is not None and taken[0].is_alive():
        return taken
    if taken is not None:
        taken[1].close()
    return _fresh_process()


def _fresh_process() -> tuple[Any, Connection]:
    """A new worker process, not yet given anything, and the host's end of its pipe. One spare
    is started ahead, so that a pairing does not wait for its worker to start."""
    global _spare

    def start() -> tuple[Any, Connection]:
        ctx = context()
        host, child = ctx.Pipe()
        process = ctx.Process(target=serve, args=(child,), daemon=True)
        process.start()
        child.close()
        return process, host

    for entry in list(_closing):
        process, deadline = entry
        if not process.is_alive() or time.monotonic() > deadline:
            _closing.remove(entry)
            _stop(process)
    if _spare is not None and _spare[0].is_alive():
        taken = _spare
    else:
        if _spare is not None:
            _spare[1].close()
        taken = start()
    _spare = start()
    return taken


class AttackWorker:
    """The host's side of one attack's worker process (a context manager)."""

    def __init__(
        self,
        attack: Any,
        model: nn.Module | None,
        surrogates: dict[str, nn.Module],
        device: torch.device,
        seed: int,
        eot_samples: int = 1,
        bpda: bool = False,
        fast: bool = False,
        timeout: float | None = None,
        description: str = "attack",
    ) -> None:
        self.access = Access(attack.access)
        self.device = device
        self.timeout = timeout
        self.description = description
        self.deadline = time.monotonic() + timeout if timeout else None
        self.violation: AccessError | None = None
        white_box = self.access == Access.WHITE_BOX
        queries = self.access in (Access.SCORE_QUERY, Access.LABEL_QUERY)
        try:
            blob = cloudpickle.dumps((attack, model if white_box else None, surrogates))
        except Exception as exc:
            raise PluginError(f"{description}: the attack cannot be sent to its worker process ({exc})") from exc
        options = {
            "device": str(device),
            "seed": seed,
            # A query attack's passes run in the host, which answers its queries: its worker
            # keeps to one thread rather than spin against the host's for the same cores.
            "threads": 1 if queries else torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "eot_samples": eot_samples,
            "bpda": bpda and white_box,
            "fast": fast,
        }
        self._key = _attack_key(attack)
        #: Whether the worker may serve this attack's next pairing: only after a clean finish.
        self._reusable = False
        self._process, self._conn = _worker_for(attack)
        try:
            self._send_raw(options, blob)
        except BaseException:
            self.close()
            raise

    def _send_raw(self, options: dict[str, Any], blob: bytes) -> None:
        try:  # host to worker: the worker may unpickle what the host sends, never the reverse
            self._conn.send(options)
            self._conn.send_bytes(blob)
        except (BrokenPipeError, ConnectionError, OSError):
            raise self._died() from None

    def __enter__(self) -> "AttackWorker":
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if exc_type is not None:
            self._reusable = False
        self.close()

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        target: torch.Tensor | None,
        oracle: _Oracle | None,
    ) -> tuple[torch.Tensor, int, int]:
        """Send one batch; answer the attack's queries with ``oracle``; return its ``x_adv`` (a
        plain tensor on the host's device) and the forward and backward passes it reported."""
        tensors = [x, y] + ([target] if target is not None else [])
        meta = {"threat": {"norm": threat.norm, "eps": threat.eps, "targeted": threat.targeted},
                "budget": oracle.budget if oracle is not None else None}
        self._send("perturb", meta, tensors)
        while True:
            op, meta, tensors = self._receive()
            if op == "query" and oracle is not None and len(tensors) in (1, 2):
                self._answer(oracle, tensors)
            elif op == "result" and len(tensors) == 1:
                if self.violation is not None:
                    raise self.violation
                passes = [meta.get(k, 0) for k in ("forward", "backward")]
                forward, backward = (int(p) if type(p) is int else 0 for p in passes)
                return tensors[0].to(self.device), forward, backward
            elif op == "error":
                raise _worker_error(meta)
            else:
                raise ProtocolError(f"{self.description}: unexpected message {op!r} from the attack worker")

    def finish(self) -> list[str]:
        """Ask the worker whether the attack left the models it was given as it got them: the
        list of what changed (empty if nothing). Only an honest mistake can be caught this way,
        since the check runs in the attack's process; the host judges with its own model anyway."""
        self._send("finish", {})
        op, meta, _ = self._receive()
        if op == "error":
            raise _worker_error(meta)
        changed = meta.get("changed") if op == "finished" else None
        if not isinstance(changed, list):
            raise ProtocolError(f"{self.description}: unexpected message {op!r} from the attack worker")
        self._reusable = not changed and self.violation is None
        return [str(problem) for problem in changed]

    def _answer(self, oracle: _Oracle, tensors: list[torch.Tensor]) -> None:
        x = tensors[0].to(self.device)
        index = tensors[1] if len(tensors) == 2 else None
        try:
            answer = oracle(x, index)
        except AccessError as exc:
            self.violation = self.violation or exc
            self._send("denied", {"type": type(exc).__name__, "message": str(exc)})
        else:
            self._send("answer", {}, [answer])

    def _send(self, op: str, meta: dict[str, Any], tensors: Sequence[torch.Tensor] = ()) -> None:
        try:
            send(self._conn, op, meta, tensors)
        except (BrokenPipeError, ConnectionError, OSError):
            raise self._died() from None

    def _receive(self) -> Message:
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if remaining is not None and (remaining <= 0 or not self._conn.poll(remaining)):
            _stop(self._process)
            raise PairingTimeout(f"{self.description} did not finish within {self.timeout:g} s (--timeout)")
        try:
            data = self._conn.recv_bytes()
        except (EOFError, ConnectionError, OSError):
            raise self._died() from None
        return decode(data)

    def _died(self) -> PluginError:
        self._process.join(timeout=CLOSE_GRACE)
        code = self._process.exitcode
        return PluginError(f"{self.description}: the attack's worker process exited (code {code}) before answering")

    def close(self) -> None:
        """End the pairing. A worker whose pairing finished cleanly waits for the same attack's
        next one; any other is asked to exit, without waiting: one still running
        :data:`CLOSE_GRACE` seconds later is killed when the next worker is taken (or at exit,
        being a daemon)."""
        if self._reusable and self._process.is_alive():
            try:
                send(self._conn, "done")
            except (BrokenPipeError, ConnectionError, OSError):
                self._reusable = False
        if self._reusable and self._process.is_alive():
            previous = _idle.pop(self._key, None)
            if previous is not None:
                _retire(*previous)
            _idle[self._key] = (self._process, self._conn)
        else:
            _retire(self._process, self._conn)


def _worker_error(meta: dict[str, Any]) -> Exception:
    """The exception a worker reported, rebuilt from text: Arena's own error types by name (so
    that an access violation reads as one), anything else as :class:`WorkerError`."""
    type_name, message = str(meta.get("type", "Exception")), str(meta.get("message", ""))
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, ArenaError):
        return cls(message)
    return WorkerError(type_name, message, str(meta.get("traceback", "")))


# -- the worker process ---------------------------------------------------------------------


class _Channel:
    """The worker's end of the pipe, used by remote oracles to ask the host."""

    def __init__(self, conn: Connection, device: torch.device) -> None:
        self.conn = conn
        self.device = device

    def query(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        send(self.conn, "query", {}, [x] + ([index] if index is not None else []))
        op, meta, tensors = decode(self.conn.recv_bytes())
        if op == "denied":
            raise _worker_error(meta)
        return tensors[0].to(self.device)


class _RemoteOracle:
    """An oracle whose answers come from the host: the worker holds no model to reach."""

    def __init__(self, channel: _Channel, batch_size: int, budget: int) -> None:
        _Oracle.__init__(self, None, batch_size, budget)  # type: ignore[arg-type]
        self._channel = channel

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        self._count(x, index)  # type: ignore[attr-defined]
        return self._channel.query(x.detach(), index)


class RemoteScoreOracle(_RemoteOracle, ScoreOracle):
    """:class:`~arena.ScoreOracle` as a worker sees it."""


class RemoteLabelOracle(_RemoteOracle, LabelOracle):
    """:class:`~arena.LabelOracle` as a worker sees it."""


def _numpy_dtype(dtype: torch.dtype) -> str | None:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype.name
    except TypeError:  # bfloat16 and other types numpy lacks
        return None


def _describe(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def serve(conn: Connection) -> None:
    """The worker process: for each pairing the host sends, load its settings and attack and
    attack one batch per ``perturb`` message until ``done``; exit on ``close`` (or a closed
    pipe). Every pairing's random stream starts from the run's seed."""
    try:
        while True:
            options, blob = conn.recv(), conn.recv_bytes()
            if _serve_pairing(conn, options, blob) != "done":
                return
    except (EOFError, BrokenPipeError):
        return
    except BaseException as exc:  # reported to the host, which records the pairing as failed
        try:
            send(conn, "error", _describe(exc))
        except (BrokenPipeError, OSError):
            pass


def _serve_pairing(conn: Connection, options: dict[str, Any], blob: bytes) -> str:
    """One pairing in the worker; returns the message that ended it."""
    torch.set_num_threads(options["threads"])
    if options["deterministic"] != torch.are_deterministic_algorithms_enabled():
        # Only when it changes: the call imports torch's compiler configuration (~0.8 s).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(options["deterministic"])
    random.seed(options["seed"])
    numpy.random.seed(options["seed"])
    torch.manual_seed(options["seed"])
    attack, model, surrogates = cloudpickle.loads(blob)
    given_models = {name: m for name, m in [("target", model), *surrogates.items()] if m is not None}
    prints = {name: fingerprint(m) for name, m in given_models.items()}
    device = torch.device(options["device"])
    fast = options["fast"]
    view = (FastModel(model, device) if fast else model) if model is not None else None
    surrogate_views = {name: FastModel(m, device) if fast else m for name, m in surrogates.items()}
    access = Access(attack.access)
    channel = _Channel(conn, device)
    with ExitStack() as stack:
        if options["bpda"] and model is not None:
            stack.enter_context(straight_through(model))
        stack.enter_context(tf32_matmul(device, enabled=fast))
        while True:
            op, meta, tensors = decode(conn.recv_bytes())
            if op == "finish":
                changed = [f"{name}: {problem}" for name, m in given_models.items()
                           for problem in frozen_state_problems(m, prints[name])]
                send(conn, "finished", {"changed": changed})
                continue
            if op != "perturb":
                return op
            x, y, *rest = (t.to(device) for t in tensors)
            threat = ThreatModel(**meta["threat"])
            counter = PassCounter()
            if access == Access.WHITE_BOX:
                given: Any = WhiteBox(view, counter, options["eot_samples"])
            elif access == Access.SCORE_QUERY:
                given = RemoteScoreOracle(channel, len(x), meta["budget"])
            elif access == Access.LABEL_QUERY:
                given = RemoteLabelOracle(channel, len(x), meta["budget"])
            else:
                given = TransferAccess({name: WhiteBox(m, counter) for name, m in surrogate_views.items()})
            x_adv = attack.perturb(given, x, y, threat, rest[0] if rest else None)
            if not isinstance(x_adv, torch.Tensor):
                raise errors.RefusedResult(f"the attack returned {type(x_adv).__name__}, not a tensor")
            if _numpy_dtype(x_adv.dtype) not in DTYPES:
                raise errors.RefusedResult(f"the attack returned dtype {x_adv.dtype}, expected {x.dtype}")
            send(conn, "result", {"forward": counter.forward, "backward": counter.backward}, [x_adv])
