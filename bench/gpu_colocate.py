"""Two co-located functions on one device under the vertical controller (GPU check, part 6).

Usage: python bench/gpu_colocate.py [--device cuda|cpu] [--duration 20] [--rate 300]
                                    [--slo 0.02] [--json]

An inference MLP (high priority: Poisson requests at ``--rate``, batches of what is
queued up to 32, each request's latency against ``--slo``) and a training MLP (low
priority: back-to-back SGD steps) share one device, three ways:

* ``alone``      — inference only;
* ``static``     — both, each held to a fixed share (under CUDA MPS: the inference
  client at its request %, the trainer at the rest);
* ``controller`` — both, the trainer at its limit % under MPS and *step-gated* by Dilu's
  vertical controller (:mod:`batchwise.gpu.vertical`, every 5 ms from the inference
  client's busy flag and its batch times): after a step of ``t`` seconds it rests
  ``t × (limit / share − 1)``, so it uses only the share the controller gives it —
  a step-level token bucket, since MPS fixes a client's percentage at its start.

The same script runs on a CPU (``--device cpu``, no MPS: shares then only gate the
trainer's steps) so it is exercised where no GPU is. Results: inference p50/p99, the
share of requests over the SLO, trainer steps per second.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from batchwise.gpu import vertical
from batchwise.gpu.vertical import Budget, Priority, Tenant

REQUEST, LIMIT = 0.3, 0.6  # the inference function's SM shares
TRAIN_REQUEST, TRAIN_LIMIT = 0.7, 0.9
MAX_BATCH = 32


def _mlp(device: str, width: int) -> Any:
    import torch

    layers: list[Any] = []
    for _ in range(4):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def inference(device: str, width: int, rate: float, duration: float, busy: Any,
              overflow: Any, solo_s: float, out: Any) -> None:  # fmt: skip
    """Poisson arrivals, batches of what waits; busy flag and batch overflow for the controller."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    net = _mlp(device, width).eval()
    xs = torch.randn(MAX_BATCH, width, device=device)
    with torch.inference_mode():
        for _ in range(5):
            net(xs)
        _sync(device)
        rng = np.random.default_rng(0)
        arrivals = np.cumsum(rng.exponential(1 / rate, int(rate * duration * 1.2)))
        arrivals = arrivals[arrivals < duration]
        t0 = time.perf_counter()
        lat, i = [], 0
        while i < len(arrivals):
            now = time.perf_counter() - t0
            if arrivals[i] > now:
                time.sleep(min(arrivals[i] - now, 0.001))
                continue
            j = i
            while j < len(arrivals) and arrivals[j] <= now and j - i < MAX_BATCH:
                j += 1
            busy.value = 1
            s = time.perf_counter()
            net(xs[: j - i])
            _sync(device)
            took = time.perf_counter() - s
            busy.value = 0
            overflow.value = max(overflow.value, took / (solo_s * (j - i) / MAX_BATCH + 1e-9))
            done = time.perf_counter() - t0
            lat += [done - a for a in arrivals[i:j]]
            i = j
    out.put(lat)


def trainer(device: str, width: int, duration: float, gate: Any, out: Any) -> None:
    """Back-to-back SGD steps; after each, rest so its use is ``gate`` of its limit."""
    import torch

    torch.set_num_threads(1)
    net = _mlp(device, width)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    x = torch.randn(64, width, device=device)
    steps, t_end = 0, time.perf_counter() + duration
    while time.perf_counter() < t_end:
        s = time.perf_counter()
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
        _sync(device)
        took = time.perf_counter() - s
        steps += 1
        g = max(0.01, min(1.0, gate.value))
        if g < 1.0:
            time.sleep(took * (1.0 / g - 1.0))
    out.put(steps / duration)


def controller(busy: Any, overflow: Any, gate: Any, stop: threading.Event) -> dict[str, int]:
    """Dilu's vertical controller every 5 ms: the trainer's share ÷ its limit is its gate."""
    hp = Tenant("inference", Priority.HIGH, REQUEST, LIMIT)
    lp = Tenant("trainer", Priority.LOW, TRAIN_REQUEST, TRAIN_LIMIT)
    budget = Budget()
    while not stop.is_set():
        over, overflow.value = overflow.value, 0.0
        budget = vertical.feedback(budget, over)
        shares = vertical.allocate([hp, lp], {"inference": bool(busy.value)}, budget)
        gate.value = shares["trainer"] / TRAIN_LIMIT
        time.sleep(vertical.TICK_S)
    return {"emergencies": budget.emergencies, "recoveries": budget.recoveries}


def run(way: str, args: argparse.Namespace, solo_s: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    busy, overflow, gate = ctx.Value("i", 0), ctx.Value("d", 0.0), ctx.Value("d", 1.0)
    q_inf, q_tr = ctx.Queue(), ctx.Queue()
    share = {"alone": LIMIT, "static": REQUEST, "controller": LIMIT}[way]
    os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(round(share * 100))
    inf = ctx.Process(target=inference, args=(args.device, args.width, args.rate, args.duration,
                                              busy, overflow, solo_s, q_inf))  # fmt: skip
    inf.start()
    tr = None
    if way != "alone":
        train_share = 1 - REQUEST if way == "static" else TRAIN_LIMIT
        os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(round(train_share * 100))
        tr = ctx.Process(target=trainer, args=(args.device, args.width, args.duration, gate, q_tr))
        tr.start()
    os.environ.pop("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", None)
    stop, counts = threading.Event(), {}
    if way == "controller":
        th = threading.Thread(target=lambda: counts.update(controller(busy, overflow, gate, stop)))
        th.start()
    lat = q_inf.get()
    steps = q_tr.get() if tr is not None else None
    stop.set()
    inf.join()
    if tr is not None:
        tr.join()
    if way == "controller":
        th.join()
    lat.sort()
    return {
        "requests": len(lat),
        "p50_s": round(statistics.median(lat), 5),
        "p99_s": round(lat[int(0.99 * (len(lat) - 1))], 5),
        "over_slo": round(sum(x > args.slo for x in lat) / len(lat), 4),
        "trainer_steps_per_s": None if steps is None else round(steps, 2),
        **counts,
    }


def solo_time(args: argparse.Namespace) -> float:
    """A full inference batch's time alone (the controller's least busy period)."""
    import torch

    torch.set_num_threads(1)
    net = _mlp(args.device, args.width).eval()
    x = torch.randn(MAX_BATCH, args.width, device=args.device)
    with torch.inference_mode():
        for _ in range(5):
            net(x)
        _sync(args.device)
        s = time.perf_counter()
        for _ in range(20):
            net(x)
        _sync(args.device)
    return (time.perf_counter() - s) / 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--slo", type=float, default=0.02)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    solo = solo_time(args)
    rows = {way: run(way, args, solo) for way in ("alone", "static", "controller")}
    doc = {"device": args.device, "solo_batch_s": round(solo, 5), "rate": args.rate,
           "slo_s": args.slo, "ways": rows}  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for way, r in rows.items():
        print(f"{way:11} p50 {r['p50_s']:.4f} s  p99 {r['p99_s']:.4f} s  over SLO "
              f"{r['over_slo']:.2%}  trainer {r['trainer_steps_per_s']} steps/s")  # fmt: skip


if __name__ == "__main__":
    main()
