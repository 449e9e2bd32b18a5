"""The Dilu authors' GPU-cluster workload format, parsed into frozen dataclasses.

One Python-dict literal per line (``../shared/data/dilu/workloads/instances-*.txt``)::

    {'Time': '2024-06-19 15:46:09', 'Action': 'start', 'Instance': {'service_name':
     'training-8bfjn3', 'type': 'training', 'gpu_num': 2, 'sm_requests': 0.55,
     'sm_limits': 0.81, 'memory': [30, 30]}}

A ``delete`` repeats the started instance's dict; only ``service_name`` is needed to
find it, and any other field it carries must agree with the start (a mismatch means
the file was edited by hand or generated wrongly, and a silent replay would hide it).

Lines are read with :func:`ast.literal_eval` (never ``eval``: a workload file is
data). Every problem is a :class:`ConfigError` naming the file, the line and the
field, so the CLI exits 2 with one line: a bad literal, a missing key, a wrong
type, a negative or over-capacity value, a delete of an unknown or already-deleted
instance, a second start of a live one, or time going backwards.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from batchwise.errors import ConfigError

DEFAULT_GPU_MEMORY_GB = 40.0
"""Memory of one GPU (GB): an A100-40GB, as in the paper and the authors' simulator."""
DEFAULT_LIMIT_CAPACITY = 1.5
"""Σ SM limits a GPU may carry (fraction of its SMs): limits are oversubscribed to 150 %."""
DEFAULT_GPUS_PER_NODE = 4
"""GPUs per node; a training gang must fit on one node."""
SM_CAPACITY = 1.0
"""Σ SM requests a GPU may carry: requests are guarantees, never oversubscribed."""
MAX_LINE_CHARS = 10_000
"""Longest line read (characters): a real line is ~200; a longer one is not this format."""


class Kind(StrEnum):
    """Instance types that occur in the authors' workloads."""

    TRAINING = "training"
    INFERENCE = "inference"
    LLM_INFERENCE = "llm-inference"


class Action(StrEnum):
    START = "start"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class GpuInstance:
    """One function instance and what it asks of each GPU it runs on."""

    name: str  # unique among live instances (the file's service_name)
    kind: Kind
    gpu_num: int  # >= 1; > 1 only for training (a gang on one node)
    sm_request: float  # per GPU, in (0, 1]: the guaranteed share of its SMs
    sm_limit: float  # per GPU, in [sm_request, limit capacity]: what it may burst to
    memory_gb: tuple[float, ...]  # per GPU, len == gpu_num, each in (0, GPU memory]
    function: str  # replicas of one function share it; the authors' files: == name

    @property
    def total_memory_gb(self) -> float:
        return float(sum(self.memory_gb))


@dataclass(frozen=True, slots=True)
class Event:
    """A start or delete at ``time_s`` seconds after the workload's first event."""

    time_s: float  # >= 0, non-decreasing along Workload.events
    action: Action
    instance: GpuInstance  # for a delete: the instance as it was started
    line: int  # 1-based line in the file, for error messages


@dataclass(frozen=True, slots=True)
class Workload:
    source: str  # the file it came from (or "<text>")
    events: tuple[Event, ...]  # every delete names an instance live at that point

    @property
    def n_instances(self) -> int:
        return sum(1 for e in self.events if e.action is Action.START)

    @property
    def max_live(self) -> int:
        """Most instances live at once: bounds how many nodes any sane placement opens."""
        live = peak = 0
        for e in self.events:
            live += 1 if e.action is Action.START else -1
            peak = max(peak, live)
        return peak


@dataclass(frozen=True, slots=True)
class Limits:
    """What one GPU holds; values above these are errors, not silently clipped."""

    gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB
    limit_capacity: float = DEFAULT_LIMIT_CAPACITY
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE


def load_workload(path: str | Path, limits: Limits | None = None) -> Workload:
    """Read and validate a workload file (see the module docstring for what is checked)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read workload ({reason})", file=str(p)) from None
    return parse_workload(text, str(p), limits)


def parse_workload(text: str, source: str = "<text>", limits: Limits | None = None) -> Workload:
    """Parse the text of a workload file; ``source`` names it in errors."""
    lim = limits or Limits()
    parser = _Parser(source, lim)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            parser.feed(line, lineno)
    if not parser.events:
        raise ConfigError("no events (expected one dict literal per line)", file=source)
    return Workload(source=source, events=tuple(parser.events))


class _Parser:
    """Line-by-line validation with the live set, so deletes can be checked as they come."""

    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.events: list[Event] = []
        self.live: dict[str, tuple[GpuInstance, dict[str, Any]]] = {}
        self.deleted_at: dict[str, int] = {}  # name -> line of its delete (while not restarted)
        self.t0: datetime | None = None
        self.last_t: float = -math.inf

    def error(self, line: int, message: str, field: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.source, line=line, field=field)

    def feed(self, line: str, lineno: int) -> None:
        rec = self._literal(line, lineno)
        t = self._time(rec, lineno)
        action = self._action(rec, lineno)
        inst_dict = _require(rec, "Instance", dict, self, lineno)
        if action is Action.START:
            inst = self._start(inst_dict, lineno)
        else:
            inst = self._delete(inst_dict, lineno)
        self.events.append(Event(time_s=t, action=action, instance=inst, line=lineno))

    def _literal(self, line: str, lineno: int) -> dict[str, Any]:
        if len(line) > MAX_LINE_CHARS:
            raise self.error(lineno, f"line longer than {MAX_LINE_CHARS} characters")
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise self.error(lineno, "not a Python dict literal") from None
        if not isinstance(rec, dict):
            raise self.error(lineno, f"expected a dict literal, got {type(rec).__name__}")
        return rec

    def _time(self, rec: dict[str, Any], lineno: int) -> float:
        raw = _require(rec, "Time", str, self, lineno)
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise self.error(lineno, f"not a 'YYYY-MM-DD HH:MM:SS' time: {raw!r}", "Time") from None
        if when.tzinfo is not None:
            raise self.error(lineno, "use local times without a time zone", "Time")
        if self.t0 is None:
            self.t0 = when
        t = (when - self.t0).total_seconds()
        if t < self.last_t:
            raise self.error(lineno, f"time goes backwards ({raw} is before the line above)",
                             "Time")  # fmt: skip
        self.last_t = t
        return t

    def _action(self, rec: dict[str, Any], lineno: int) -> Action:
        raw = _require(rec, "Action", str, self, lineno)
        try:
            return Action(raw)
        except ValueError:
            raise self.error(lineno, f"must be 'start' or 'delete', got {raw!r}",
                             "Action") from None  # fmt: skip

    def _start(self, d: dict[str, Any], lineno: int) -> GpuInstance:
        inst = _instance(d, self, lineno)
        if inst.name in self.live:
            raise self.error(lineno, f"{inst.name!r} is already running", "service_name")
        self.live[inst.name] = (inst, d)
        self.deleted_at.pop(inst.name, None)
        return inst

    def _delete(self, d: dict[str, Any], lineno: int) -> GpuInstance:
        name = _require(d, "service_name", str, self, lineno, "Instance.")
        if name not in self.live:
            if name in self.deleted_at:
                why = f"already deleted at line {self.deleted_at[name]}"
            else:
                why = "never started"
            raise self.error(lineno, f"delete of {name!r}: {why}", "Instance.service_name")
        inst, started = self.live.pop(name)
        for key, value in d.items():
            if key in started and started[key] != value:
                raise self.error(lineno, f"{value!r} differs from the start's {started[key]!r}",
                                 f"Instance.{key}")  # fmt: skip
        self.deleted_at[name] = lineno
        return inst


def _require(
    d: dict[str, Any], key: str, kind: type, p: _Parser, lineno: int, prefix: str = ""
) -> Any:
    if key not in d:
        raise p.error(lineno, "missing", prefix + key)
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise p.error(lineno, f"must be {kind.__name__}, got {type(value).__name__}", prefix + key)
    return value


def _number(d: dict[str, Any], key: str, p: _Parser, lineno: int) -> float:
    if key not in d:
        raise p.error(lineno, "missing", f"Instance.{key}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise p.error(lineno, f"must be a finite number, got {v!r}", f"Instance.{key}")
    return float(v)


def _instance(d: dict[str, Any], p: _Parser, lineno: int) -> GpuInstance:
    """Validate a start's instance dict against the GPU it must fit on."""
    name = _require(d, "service_name", str, p, lineno, "Instance.")
    if not name.strip():
        raise p.error(lineno, "must not be empty", "Instance.service_name")
    kind_raw = _require(d, "type", str, p, lineno, "Instance.")
    try:
        kind = Kind(kind_raw)
    except ValueError:
        choices = ", ".join(k.value for k in Kind)
        raise p.error(lineno, f"unknown type {kind_raw!r} (one of {choices})",
                      "Instance.type") from None  # fmt: skip
    gpu_num = _require(d, "gpu_num", int, p, lineno, "Instance.")
    lim = p.limits
    if not 1 <= gpu_num <= (lim.gpus_per_node if kind is Kind.TRAINING else 1):
        most = lim.gpus_per_node if kind is Kind.TRAINING else 1
        raise p.error(lineno, f"must be in 1..{most} for {kind.value}, got {gpu_num}",
                      "Instance.gpu_num")  # fmt: skip
    req = _number(d, "sm_requests", p, lineno)
    if not 0.0 < req <= SM_CAPACITY:
        raise p.error(lineno, f"must be in (0, {SM_CAPACITY:g}], got {req:g}",
                      "Instance.sm_requests")  # fmt: skip
    limit = _number(d, "sm_limits", p, lineno)
    if not req <= limit <= lim.limit_capacity:
        raise p.error(lineno, f"must be in [sm_requests={req:g}, {lim.limit_capacity:g}], "
                      f"got {limit:g}", "Instance.sm_limits")  # fmt: skip
    return GpuInstance(name=name, kind=kind, gpu_num=gpu_num, sm_request=req, sm_limit=limit,
                       memory_gb=_memory(d, gpu_num, p, lineno),
                       function=_function(d, name, p, lineno))  # fmt: skip


def _function(d: dict[str, Any], name: str, p: _Parser, lineno: int) -> str:
    """An optional ``function`` key (not in the authors' files) groups replicas."""
    if "function" not in d:
        return name
    return _require(d, "function", str, p, lineno, "Instance.")


def _memory(d: dict[str, Any], gpu_num: int, p: _Parser, lineno: int) -> tuple[float, ...]:
    mem = _require(d, "memory", list, p, lineno, "Instance.")
    if len(mem) != gpu_num:
        raise p.error(lineno, f"has {len(mem)} entries, expected gpu_num={gpu_num}",
                      "Instance.memory")  # fmt: skip
    cap = p.limits.gpu_memory_gb
    out = []
    for v in mem:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= cap:
            raise p.error(lineno, f"each entry must be a number in (0, {cap:g}] GB, got {v!r}",
                          "Instance.memory")  # fmt: skip
        out.append(float(v))
    return tuple(out)
