"""Fractional vCPU allotments enforced by the kernel: one cgroup per instance.

Why the kernel: a function size of 0.6 vCPU is what the planner prices and what the
latency model was fitted at; only a CFS quota makes a process actually get 0.6 of a
core, however many threads it runs. cgroup v1 (``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``) and v2 (``cpu.max``) both work where their folder is writable
(root, or a delegated subtree). Elsewhere an instance limits itself with a duty cycle
(:class:`DutyCycle`: after a batch that took ``t`` on ``threads`` threads it rests so
that its average use is its allotment), which is coarser: the mechanism in force is
reported (``mechanism``) so results are never silently unenforced.

``BATCHWISE_CPU_QUOTA`` forces a mechanism: ``cgroup``, ``duty-cycle`` or ``off``.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from batchwise.perf.cfs import DEFAULT_PERIOD_S

PERIOD_US = round(DEFAULT_PERIOD_S * 1e6)
"""CFS period (µs): the kernel's default; quotas are vCPU × period (modelled in
:mod:`batchwise.perf.cfs`, which the simulator runs)."""
MIN_QUOTA_US = 1_000
"""The kernel refuses quotas under 1 ms."""
MIN_SHARES = 2
"""The least ``cpu.shares`` cgroup v1 accepts."""
YIELD_SHARES = 64
"""Weight of an instance's cgroup beside the gateway's (1024, a nice-0 process's): the
gateway wins a contended core 16:1, yet an instance is not starved for its replies.
Measured on 2 cores: with the least weight (2) a zero-latency model's answers queued
behind the gateway (p99 92–170 ms at 1000 req/s); with 64, 13–46 ms up to 1500 req/s."""
DEFAULT_SHARES = 1024
ENV = "BATCHWISE_CPU_QUOTA"
CGROUP_V1 = "cgroup-v1"
CGROUP_V2 = "cgroup-v2"
DUTY_CYCLE = "duty-cycle"
OFF = "off"
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _v2_parent() -> Path | None:
    """This process's own v2 cgroup, where children may be made (needs the cpu controller)."""
    if not (V2_ROOT / "cgroup.controllers").is_file():
        return None
    try:
        line = next(ln for ln in Path("/proc/self/cgroup").read_text().splitlines()
                    if ln.startswith("0::"))  # fmt: skip
    except (OSError, StopIteration):
        return None
    parent = V2_ROOT / line[3:].lstrip("/")
    controllers = (parent / "cgroup.controllers").read_text() if parent.is_dir() else ""
    return parent if "cpu" in controllers.split() and _writable_dir(parent) else None


def detect() -> str:
    """The mechanism this process can use: cgroup-v1, cgroup-v2, duty-cycle (or off if forced)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in (OFF, DUTY_CYCLE):
        return forced
    if (V1_ROOT / "cpu.cfs_quota_us").is_file() and _writable_dir(V1_ROOT):
        return CGROUP_V1
    if _v2_parent() is not None:
        return CGROUP_V2
    if forced == "cgroup":
        raise RuntimeError(f"{ENV}=cgroup but no writable cgroup (v1 {V1_ROOT} or v2) here")
    return DUTY_CYCLE


def _folder_at_default_weight(folder: Path) -> None:
    """The ``batchwise/`` folder competes with the machine's other processes at the
    default weight, as one process would (an earlier version lowered it: then any busy
    process on the machine starved serving — a batch job beside it took 94 % of the
    requests' admissions at 5x)."""
    shares = folder / "cpu.shares"
    with contextlib.suppress(OSError):
        if shares.read_text().strip() != str(DEFAULT_SHARES):
            shares.write_text(str(DEFAULT_SHARES))


def join_gateway() -> CpuQuota | None:
    """Move this process (the gateway) into its own cgroup beside its instances' (v1).

    Why: quotas cap what an instance may take, but a contended core is split by weight;
    the gateway's work per request is small and every request waits on it (refusals,
    batching timeouts, answers), so under overload it must win the core at once. In one
    folder, the gateway at the default weight and each instance at
    :data:`YIELD_SHARES` order exactly serving's own processes, and the folder as a
    whole competes with the rest of the machine as before. None where there is no
    writable v1 hierarchy (then nothing is re-weighted). Undo with :func:`leave_gateway`.
    """
    if detect() != CGROUP_V1:
        return None
    path = V1_ROOT / "batchwise" / f"gateway-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        path.mkdir(parents=True)
        _folder_at_default_weight(path.parent)
        quota = CpuQuota(float(os.cpu_count() or 1), CGROUP_V1, path)
        quota.enter()
    except OSError:
        return None
    return quota


def leave_gateway(quota: CpuQuota | None) -> None:
    """Back to the hierarchy's root, and remove the gateway's cgroup."""
    if quota is None or quota.path is None:
        return
    with contextlib.suppress(OSError):
        (V1_ROOT / "cgroup.procs").write_text(str(os.getpid()))
    quota.remove()


def quota_us(vcpu: float) -> int:
    """CFS quota (µs per period) for ``vcpu`` (> 0)."""
    if vcpu <= 0:
        raise ValueError(f"vcpu must be > 0, got {vcpu}")
    return max(MIN_QUOTA_US, round(vcpu * PERIOD_US))


def read_quota_us(path: Path) -> int:
    """A cgroup's CFS quota in µs per period, v1 or v2 (-1 / "max": unlimited, as -1)."""
    if (path / "cpu.cfs_quota_us").is_file():
        return int((path / "cpu.cfs_quota_us").read_text())
    first = (path / "cpu.max").read_text().split()[0]
    return -1 if first == "max" else int(first)


@dataclass
class CpuQuota:
    """One instance's allotment. ``path`` is its cgroup (None: duty cycle or off)."""

    vcpu: float
    mechanism: str
    path: Path | None = None

    @classmethod
    def create(cls, name: str, vcpu: float, mechanism: str | None = None,
               top_level: bool = False) -> CpuQuota:  # fmt: skip
        """Make the cgroup for ``name`` (unique per instance) with a quota of ``vcpu``.

        ``top_level`` (v1): beside the ``batchwise`` folder rather than in it, so that a
        low-priority class set on it holds against every process of the machine (the
        gateway, a load generator), not only against the instances in that folder.
        """
        mech = mechanism or detect()
        if mech not in (CGROUP_V1, CGROUP_V2):
            return cls(vcpu, mech)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        leaf = f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if mech == CGROUP_V1:
            path = V1_ROOT / f"batchwise-{leaf}" if top_level else V1_ROOT / "batchwise" / leaf
            path.mkdir(parents=True)
            if not top_level:
                (path / "cpu.shares").write_text(str(YIELD_SHARES))  # see join_gateway
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota_us(vcpu)))
        else:
            parent = _v2_parent()
            assert parent is not None
            path = parent / f"batchwise-{leaf}"
            path.mkdir()
            (path / "cpu.max").write_text(f"{quota_us(vcpu)} {PERIOD_US}")
        return cls(vcpu, mech, path)

    def set_vcpu(self, vcpu: float) -> bool:
        """Change the allotment at once (the kernel applies a new quota from its next check,
        within milliseconds): the vertical-scaling primitive. False without a cgroup (a
        duty cycle lives in the instance and cannot be changed from outside)."""
        self.vcpu = vcpu
        if self.path is None:
            return False
        if self.mechanism == CGROUP_V1:
            (self.path / "cpu.cfs_quota_us").write_text(str(quota_us(vcpu)))
        else:
            (self.path / "cpu.max").write_text(f"{quota_us(vcpu)} {PERIOD_US}")
        return True

    def set_low_priority(self) -> bool:
        """Let every other task run first when both want a core: ``cpu.idle`` (SCHED_IDLE
        for the group, Linux 5.15+) where the kernel has it, else the least weight. A
        batch job soaks up idle CPU this way and yields a core within a scheduler tick."""
        if self.path is None:
            return False
        idle = self.path / "cpu.idle"
        if idle.is_file():
            idle.write_text("1")
        elif self.mechanism == CGROUP_V1:
            (self.path / "cpu.shares").write_text(str(MIN_SHARES))
        else:
            (self.path / "cpu.weight").write_text("1")
        return True

    def set_normal_priority(self) -> bool:
        """Undo :meth:`set_low_priority`: the weight every instance has (:data:`YIELD_SHARES`)."""
        if self.path is None:
            return False
        idle = self.path / "cpu.idle"
        if idle.is_file():
            idle.write_text("0")
        elif self.mechanism == CGROUP_V1:
            (self.path / "cpu.shares").write_text(str(YIELD_SHARES))
        return True

    def pids(self) -> list[int]:
        """Processes in the cgroup now (empty without one)."""
        if self.path is None:
            return []
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def enter(self, pid: int | None = None) -> None:
        """Move ``pid`` (default: this process; its future threads follow) into the cgroup."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def read_vcpu(self) -> float:
        """The allotment the kernel enforces now (``vcpu`` as set, without a cgroup)."""
        return self.vcpu if self.path is None else read_quota_us(self.path) / PERIOD_US

    def throttled_s(self) -> float:
        """Seconds the kernel held the cgroup back so far (0 without a cgroup)."""
        if self.path is None:
            return 0.0
        try:
            stat = dict(ln.split() for ln in (self.path / "cpu.stat").read_text().splitlines())
        except (OSError, ValueError):
            return 0.0
        if "throttled_time" in stat:  # v1: ns
            return int(stat["throttled_time"]) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def remove(self) -> None:
        """Delete the cgroup (its processes must have ended); best effort."""
        if self.path is not None:
            for _ in range(50):  # the kernel frees a cgroup shortly after its last task exits
                try:
                    self.path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            self.path = None


class DutyCycle:
    """Self-limiting where no cgroup is writable: rest after each unit of work.

    A batch that used ``c`` CPU-seconds (the process's CPU time over it, every thread
    counted) in ``t`` seconds of wall time is followed by a rest of ``c / vcpu - t``: the
    average comes down to ``vcpu``, as a cgroup's quota would hold it. CPU time, not
    wall time: a batch that waits (a sleep, I/O) uses no quota under a cgroup, and
    resting for it made a 0.1-vCPU sleep model ten times slower than it is (under a 6x
    step, 0.5 % of requests on time). The instance rests before it answers, and reports
    the rest as part of the batch's time (:meth:`batchwise.serving.instance.Instance.run`):
    a CPU-bound batch takes what the profile at ``vcpu`` says, as back to back under a
    cgroup — though a cgroup lets a short batch after an idle spell run at full speed,
    and this does not.
    """

    def __init__(self, vcpu: float) -> None:
        self.vcpu = vcpu

    def rest_s(self, busy_s: float, cpu_s: float) -> float:
        """Seconds to rest after a batch of ``busy_s`` wall time that used ``cpu_s``."""
        return max(0.0, cpu_s / self.vcpu - busy_s)


def join(path: str | Path) -> None:
    """Move this process (and so every child it starts later) into the cgroup at ``path``.

    Why: a batch job joins the low-priority group a serving gateway made
    (``batchwise serve --harvest``) before it starts its workers, which inherit it.
    A path that is not a cgroup this process may join is a ConfigError naming it.
    """
    from batchwise.errors import ConfigError

    procs = Path(path) / "cgroup.procs"
    if not procs.is_file():
        raise ConfigError(f"{path} is not a cgroup (no cgroup.procs there)", field="--cgroup")
    try:
        procs.write_text(str(os.getpid()))
    except OSError as exc:
        raise ConfigError(f"cannot join cgroup {path}: {exc.strerror or exc}",
                          field="--cgroup") from None  # fmt: skip
