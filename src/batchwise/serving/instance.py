"""A function instance: one process that loads a model once and runs batches under its quota.

Started by the gateway as ``python -m batchwise.serving.instance SOCKET SPEC_JSON``
through an instance backend. It enters its CPU cgroup first (so loading is throttled
like the planned function's cold start), loads the model, runs a warm-up batch, and
only then listens on ``SOCKET``: a socket that accepts means a warm instance, which is
what "ready" must mean to a router. It serves one connection, one batch at a time:
``("predict", id, records)`` → ``("ok", id, outputs, service_s)`` or
``("error", id, message, service_s)``, after a greeting ``("hello", inputs, outputs)``
that tells the gateway the model's tensor schema. SIGTERM drains: the batch in progress is
answered, then the process leaves; the gateway closing the connection also ends it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchwise import heap
from batchwise.backends.local import MASTER_PID_ENV, die_with_parent
from batchwise.resources.cpu_quota import DUTY_CYCLE, CpuQuota, DutyCycle
from batchwise.runtime.base import Runner, TensorSpec
from batchwise.runtime.registry import construct
from batchwise.serving import wire

GENERIC_INPUTS = (TensorSpec("input", "BYTES", (-1,)),)
GENERIC_OUTPUTS = (TensorSpec("output", "BYTES", (-1,)),)


@dataclass(frozen=True)
class InstanceConfig:
    """What one instance runs (JSON on its command line)."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    base: str = "."  # folder relative model paths are taken from
    vcpu: float = 1.0
    threads: int = 1
    cgroup: str | None = None  # cgroup folder to enter (made by the parent)
    mechanism: str = DUTY_CYCLE  # what enforces vcpu: cgroup-v1/v2, duty-cycle, off
    warmup_batch: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def example_records(runner: Any, n: int) -> list[Any] | None:
    """``n`` records the model accepts (for the warm-up), or None if it cannot say."""
    make = getattr(runner, "example", None)
    one = make() if make is not None else None
    return None if one is None else [one] + [make() for _ in range(n - 1)]


class Instance:
    """The model side of an instance, the same behind a socket (local) or a Ray actor."""

    def __init__(self, cfg: InstanceConfig) -> None:
        self.cfg = cfg
        model = construct(cfg.model, cfg.options, cfg.base, "runner.model")
        self.model = model.load() if isinstance(model, Runner) else model
        self.limiter = DutyCycle(cfg.vcpu) if cfg.mechanism == DUTY_CYCLE else None

    def schema(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """The model's inputs and outputs (a plain callable: one BYTES tensor each way)."""
        return (tuple(getattr(self.model, "inputs", ()) or GENERIC_INPUTS),
                tuple(getattr(self.model, "outputs", ()) or GENERIC_OUTPUTS))  # fmt: skip

    def warm_up(self) -> None:
        records = example_records(self.model, self.cfg.warmup_batch)
        if records:
            self.run(records)
        heap.settle()  # the model's objects live as long as the process: out of gc's walks

    def run(self, records: list[Any]) -> tuple[list[Any], float]:
        """Outputs of one batch and its service time (s), resting after it if duty-cycled.

        The rest is part of the service time: the answer leaves after it, so it is what
        the batch's requests wait, what the gateway's service model must learn (admission
        predicts free times from it) and what the instance is busy for (billing) — as a
        cgroup's throttled periods are inside a batch's wall time. Reporting the compute
        alone made a duty-cycled 0.8-vCPU instance look 25 % faster than it answers, and a
        profile under the duty cycle flat in vCPUs."""
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.model(records)
        busy = time.perf_counter() - t0
        if len(out) != len(records):
            raise RuntimeError(f"model returned {len(out)} outputs for {len(records)} records")
        if self.limiter is not None:
            time.sleep(self.limiter.rest_s(busy, time.process_time() - c0))
            busy = time.perf_counter() - t0
        return list(out), busy


def serve(sock_path: str, cfg: InstanceConfig) -> None:
    stopping = {"flag": False, "busy": False}

    def on_term(signum: int, frame: Any) -> None:
        stopping["flag"] = True
        if not stopping["busy"]:
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C
    if cfg.cgroup:
        CpuQuota(cfg.vcpu, cfg.mechanism, Path(cfg.cgroup)).enter()
    inst = Instance(cfg)
    inst.warm_up()
    tmp = f"{sock_path}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    listener.listen(1)
    os.replace(tmp, sock_path)  # appears only once warm: its existence means ready
    conn, _ = listener.accept()
    listener.close()
    conn.sendall(wire.encode(("hello", *inst.schema())))
    while not stopping["flag"]:
        msg = wire.recv_sync(conn)
        if msg is None:
            break
        _, batch_id, records = msg
        stopping["busy"] = True
        t0 = time.perf_counter()
        try:
            out, busy = inst.run(records)
            reply: tuple = ("ok", batch_id, out, busy)
        except Exception as exc:  # the model failed on this batch: the gateway answers 500
            reply = ("error", batch_id, f"{type(exc).__name__}: {exc}",
                     time.perf_counter() - t0)  # fmt: skip
        conn.sendall(wire.encode(reply))
        stopping["busy"] = False
    conn.close()


def main(argv: list[str]) -> int:
    parent = os.environ.get(MASTER_PID_ENV)
    if parent:
        die_with_parent(int(parent))
    sock_path, spec = argv
    try:
        serve(sock_path, InstanceConfig(**json.loads(spec)))
    except Exception as exc:  # load failure: one line on stderr, exit 3 (the gateway reports it)
        print(f"instance failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
