"""Measuring one (batch, SM share) point: the interface the pruning search runs on.

Why an interface: the search (:mod:`batchwise.gpu.search`) is judged on the Dilu
authors' grids, must run where a GPU is, and must run here, where none is. Three
implementations answer ``measure(batch, sm_percent)``:

* :class:`GridMeasurer` replays a measured latency grid (CSV, no header:
  ``batch_size, sm_percent, latency_s, throughput``), so results are exact and free.
* :class:`CpuQuotaMeasurer` measures live on this machine: the share stands for a vCPU
  quota (``share × the vCPU budget``, enforced by a cgroup or a duty cycle) on a real
  serving instance, through the CPU profiler's machinery
  (:mod:`batchwise.profiling.cpu`).
* :class:`MpsMeasurer` measures live on a GPU: a PyTorch model in a subprocess whose
  ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` is the share (needs CUDA and the MPS daemon).

Run as ``python -m batchwise.gpu.measure MODEL BATCH REPEATS MODE`` this module is the
MPS worker: it prints one JSON line ``{"latency_s": …}``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batchwise import aio
from batchwise.errors import ConfigError

COLUMNS = ("batch_size", "sm_percent", "latency_s", "throughput")
"""The grid CSV's columns, in order (no header line)."""
LIVE_REPEATS = 5
"""Batches timed per live point; the point's latency is their mean."""
SAMPLE_RECORDS = 256
"""Records made for a live CPU model (at least twice the batch)."""
MPS_TIMEOUT_S = 600.0
"""Longest one MPS worker may take (s): model load, warm-up and the timed batches."""
MPS_WARMUP = 3
"""Untimed batches before the MPS worker times any (CUDA kernels load lazily)."""
MPS_PIPE_DEFAULT = "/tmp/nvidia-mps"
"""Where the MPS control daemon listens unless ``CUDA_MPS_PIPE_DIRECTORY`` says."""


@dataclass(frozen=True)
class Measurement:
    """What one (batch, share) point costs and gives."""

    latency_s: float  # seconds per batch (LLaMA2's grid: per token)
    throughput: float  # items per second at this point


class Measurer(Protocol):
    """Measures one point: ``batch`` items at ``sm_percent`` (1..100) of the device."""

    def measure(self, batch: int, sm_percent: int) -> Measurement: ...


# -- replay ------------------------------------------------------------------------------


class GridMeasurer:
    """Answers from a full latency grid; a point the grid lacks is a clear error."""

    source = "grid"

    def __init__(self, points: Mapping[tuple[int, int], Measurement], path: str = "grid") -> None:
        self.points = dict(points)
        self.path = path

    @classmethod
    def from_csv(cls, path: str | Path) -> GridMeasurer:
        return cls(load_grid(path), str(path))

    def measure(self, batch: int, sm_percent: int) -> Measurement:
        try:
            return self.points[(batch, sm_percent)]
        except KeyError:
            raise ConfigError(f"the search needs the point batch {batch} at {sm_percent} % SM, "
                              "which the grid lacks", file=self.path) from None  # fmt: skip


def load_grid(path: str | Path) -> dict[tuple[int, int], Measurement]:
    """Parse a grid CSV; every bad row is a ConfigError naming the file and line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=name) from None
    points: dict[tuple[int, int], Measurement] = {}
    first: dict[tuple[int, int], int] = {}
    for line, row in enumerate(text.splitlines(), start=1):
        if not row.strip():
            continue
        batch, sm, m = _row(row, name, line)
        if (batch, sm) in points:
            raise ConfigError(f"duplicate point batch {batch} at {sm} % SM (first on line "
                              f"{first[(batch, sm)]})", file=name, line=line)  # fmt: skip
        points[(batch, sm)], first[(batch, sm)] = m, line
    if not points:
        raise ConfigError(f"no rows (expected {', '.join(COLUMNS)})", file=name)
    return points


def _row(row: str, name: str, line: int) -> tuple[int, int, Measurement]:
    cells = [c.strip() for c in row.split(",")]
    if len(cells) != len(COLUMNS):
        raise ConfigError(f"expected {len(COLUMNS)} columns ({', '.join(COLUMNS)}), got "
                          f"{len(cells)}", file=name, line=line)  # fmt: skip
    values = [_number(c, col, name, line) for c, col in zip(cells, COLUMNS, strict=True)]
    batch = _whole(values[0], "batch_size", name, line)
    sm = _whole(values[1], "sm_percent", name, line)
    if sm > 100:
        raise ConfigError(f"must be at most 100, got {sm}", file=name, line=line,
                          field="sm_percent")  # fmt: skip
    return batch, sm, Measurement(values[2], values[3])


def _number(cell: str, column: str, name: str, line: int) -> float:
    try:
        v = float(cell)
    except ValueError:
        raise ConfigError(f"not a number: {cell!r}", file=name, line=line, field=column) from None
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"must be a finite number > 0, got {cell!r}", file=name, line=line,
                          field=column)  # fmt: skip
    return v


def _whole(v: float, column: str, name: str, line: int) -> int:
    if not v.is_integer():
        raise ConfigError(f"must be a whole number, got {v:g}", file=name, line=line,
                          field=column)  # fmt: skip
    return int(v)


# -- live on this machine's CPUs ---------------------------------------------------------


class CpuQuotaMeasurer:
    """A share of the device becomes the same share of a vCPU budget, on a real instance.

    Why: the search's logic (latency falls with the share, rises with the batch) is the
    same on CPUs, so the live path is exercised where no GPU is. Each point starts a
    fresh instance with its quota (:func:`batchwise.profiling.cpu.measure_allotment`:
    its own process and cgroup, warmed with the batch first) and times
    :data:`LIVE_REPEATS` batches; latency is their mean, throughput ``batch / latency``.
    """

    source = "cpu-quota"

    def __init__(
        self, model: str, options: Mapping[str, Any] | None = None, vcpus: float | None = None,
        repeats: int = LIVE_REPEATS, base: str = ".",
    ) -> None:  # fmt: skip
        from batchwise.resources.cpu_quota import detect
        from batchwise.runtime.registry import construct

        self.model, self.options, self.base = model, dict(options or {}), base
        self.vcpus = float(vcpus or os.cpu_count() or 1)
        self.repeats = repeats
        runner = construct(model, self.options, base, "--live-cpu")  # checks the options
        self.inputs = tuple(getattr(runner, "inputs", ()) or ())
        if not self.inputs:
            raise ConfigError(f"model {model!r} declares no inputs: cannot make sample records",
                              field="--live-cpu")  # fmt: skip
        self.mechanism = detect()  # updated from the instances once one has run
        self._records: list[Any] = []

    def vcpu(self, sm_percent: int) -> float:
        """The quota standing for ``sm_percent`` of the device."""
        return round(self.vcpus * sm_percent / 100, 4)

    def measure(self, batch: int, sm_percent: int) -> Measurement:
        import statistics

        from batchwise.profiling.cpu import MIN_VCPU, measure_allotment

        vcpu = self.vcpu(sm_percent)
        if vcpu < MIN_VCPU:
            raise ConfigError(f"{sm_percent} % of {self.vcpus:g} vCPU is {vcpu:g} vCPU, under "
                              f"the {MIN_VCPU:g} vCPU a quota needs", field="--vcpus")  # fmt: skip
        coro = measure_allotment(self.model, self.options, self.base, vcpu, [batch],
                                  self.repeats, self._records_for(batch), lambda: None)  # fmt: skip
        cells, _, self.mechanism, _ = aio.run(coro)
        latency = statistics.fmean(cells[batch])
        return Measurement(latency, batch / latency)

    def _records_for(self, batch: int) -> list[Any]:
        if len(self._records) < 2 * batch:
            from batchwise.runtime.samples import sample_records

            self._records = sample_records(self.inputs, max(SAMPLE_RECORDS, 2 * batch), seed=0)
        return self._records


# -- live on a GPU under MPS -------------------------------------------------------------


class MpsMeasurer:
    """Each point runs in a fresh process limited to ``sm_percent`` of the SMs by MPS.

    Why a process per point: MPS reads ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` when a
    process creates its CUDA context, so a share cannot change inside one process.
    ``model`` is ``mlp`` (a built-in 4×4096 MLP) or ``module:function``, where
    ``function(batch, mode)`` returns a no-argument callable running one step on CUDA.
    """

    source = "mps"

    def __init__(self, model: str = "mlp", repeats: int = LIVE_REPEATS,
                 training: bool = False) -> None:  # fmt: skip
        self.model, self.repeats = model, repeats
        self.mode = "train" if training else "infer"
        _check_cuda()

    def measure(self, batch: int, sm_percent: int) -> Measurement:
        env = dict(os.environ, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=str(sm_percent))
        argv = [sys.executable, "-m", "batchwise.gpu.measure", self.model, str(batch),
                str(self.repeats), self.mode]  # fmt: skip
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=MPS_TIMEOUT_S, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ConfigError(f"MPS worker took over {MPS_TIMEOUT_S:g} s at batch {batch}, "
                              f"{sm_percent} % SM", field="--live-gpu") from None  # fmt: skip
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise ConfigError(f"MPS worker failed at batch {batch}, {sm_percent} % SM: {why}",
                              field="--live-gpu")  # fmt: skip
        latency = float(json.loads(lines[-1])["latency_s"])
        return Measurement(latency, batch / latency)


def _check_cuda() -> None:
    """Refuse at once where no GPU or no MPS daemon is: a share would not be enforced."""
    if not Path("/dev/nvidia0").exists() and not Path("/dev/nvidiactl").exists():
        raise ConfigError("no CUDA device on this machine (no /dev/nvidia*)", field="--live-gpu")
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(f"no CUDA device usable: PyTorch is missing ({exc})",
                          field="--live-gpu") from None  # fmt: skip
    if not torch.cuda.is_available():
        raise ConfigError("no CUDA device visible to PyTorch (CPU build, or no driver)",
                          field="--live-gpu")  # fmt: skip
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", MPS_PIPE_DEFAULT)
    if not Path(pipe).is_dir():
        raise ConfigError(f"no MPS control daemon ({pipe} is missing): start it with "
                          "'nvidia-cuda-mps-control -d'", field="--live-gpu")  # fmt: skip


def _mps_step(model: str, batch: int, mode: str) -> Callable[[], Any]:
    import torch

    if model != "mlp":
        from batchwise.runtime.registry import load_callable

        return load_callable(model)(batch, mode)
    width = 4096
    layers: list[torch.nn.Module] = []
    for _ in range(4):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers).cuda()
    x = torch.randn(batch, width, device="cuda")
    if mode == "train":
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)

        def train() -> None:
            opt.zero_grad()
            net(x).sum().backward()
            opt.step()

        return train
    net.eval()

    def infer() -> None:
        with torch.inference_mode():
            net(x)

    return infer


def _mps_worker(argv: list[str]) -> None:
    """Time ``REPEATS`` steps with CUDA events (the GPU's own clock) and print the mean."""
    import torch

    model, batch, repeats, mode = argv[0], int(argv[1]), int(argv[2]), argv[3]
    step = _mps_step(model, batch, mode)
    for _ in range(MPS_WARMUP):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        step()
    end.record()
    end.synchronize()
    sys.stdout.write(json.dumps({"latency_s": start.elapsed_time(end) / 1000 / repeats}) + "\n")


if __name__ == "__main__":
    _mps_worker(sys.argv[1:])
