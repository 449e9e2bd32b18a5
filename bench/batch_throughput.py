"""Batch-inference throughput: batchwise vs a naive loop vs Ray Data, same data, same model.

Run inside a loopback-only network namespace (Ray must not touch the network)::

    unshare --net --pid --fork --mount-proc -- bash -c 'ip link set lo up && \\
        .venv/bin/python bench/batch_throughput.py --records 4000 --repeats 3'

Cases (records/s = records / wall time from start to the last output written,
model loading and worker start-up included, median over ``--repeats``):

* ``ceiling``  — per-record CPU cost of read, infer (1 thread), write measured in
  isolation, turned into records/s for all cores: ``cores / sum(cost)``; once with
  batches in file order, once as batchwise forms them (shards sorted by length);
* ``naive``    — one process: read → infer (torch on all cores) → write, in file order;
* ``ray-data`` — ``read_binary_files`` → ``map_batches`` (actor pool, 1 CPU each) →
  ``write_parquet``;
* ``batchwise-local`` / ``batchwise-ray`` — the same job on both backends;
* ``kills``    — batchwise-local with a worker ``kill -9``'d every ``--kill-every`` s,
  against the same run without kills (``--kill-records`` records; exactly-once checked);
* ``chain``    — MiniLM encoder → classifier head: naive loop vs batchwise;
* ``s3-*``     — the same objects in moto (S3 API) behind a proxy adding
  ``--delay-ms`` first-byte latency, read through s3fs: naive, Ray Data, batchwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_data  # noqa: E402
from batchwise.batch.master import Master  # noqa: E402
from batchwise.batch.sinks import read_part, write_part  # noqa: E402
from batchwise.runtime.runners import EmbeddingClassifier, MiniLMEncoder  # noqa: E402

BATCH = 32
SHARD = 250
CORES = os.cpu_count() or 1


def files_for(root: Path, n: int) -> list[str]:
    return [str(gen_data.record_path(root, i)) for i in range(n)]


# -- naive ---------------------------------------------------------------------
def naive(paths: list[str], out: Path, chain: bool = False, opts: dict | None = None) -> int:
    """Read, infer, write one batch after another in one process (file order)."""
    import fsspec

    enc = MiniLMEncoder(threads=CORES)
    cls = EmbeddingClassifier(threads=CORES) if chain else None
    fs = fsspec.core.url_to_fs(paths[0], **(opts or {}))[0]
    rows: list[tuple[str, Any]] = []
    for i in range(0, len(paths), BATCH):
        batch = paths[i : i + BATCH]
        texts = [fs.cat_file(p).decode() for p in batch]
        outs = enc(texts)
        if cls is not None:
            outs = cls(outs)
        rows.extend(zip(batch, outs, strict=True))
    write_part(rows, out / "part-0.parquet", "parquet")
    return len(rows)


# -- Ray Data ------------------------------------------------------------------
class RayEncoder:
    def __init__(self) -> None:
        self.model = MiniLMEncoder(threads=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        emb = self.model([b.decode() for b in batch["bytes"]])
        return {"id": batch["path"], "output": np.stack(emb)}


def ray_data(paths: list[str], out: Path, opts: dict | None = None) -> int:
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    kw: dict[str, Any] = {}
    if opts:
        import pyarrow.fs as pafs
        import s3fs

        fs = s3fs.S3FileSystem(**opts)
        kw["filesystem"] = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
        paths = [p.removeprefix("s3://") for p in paths]
    # Read and write tasks take no CPU slot: with one actor per core holding all CPUs, Ray
    # Data would otherwise never schedule a read and hang.
    free = {"num_cpus": 0}
    ds = ray.data.read_binary_files(paths, include_paths=True, ray_remote_args=free, **kw)
    ds = ds.map_batches(RayEncoder, batch_size=BATCH, concurrency=CORES, num_cpus=1)
    ds.write_parquet(str(out), ray_remote_args=free)
    return sum(len(read_part(p)) for p in out.glob("*.parquet"))


# -- batchwise -----------------------------------------------------------------
def job_file(d: Path, inp: dict, out: Path, backend: str, chain: bool = False,
             options: dict | None = None) -> Path:  # fmt: skip
    models = [{"name": "enc", "model": "minilm", "batch_size": BATCH, "options": options or {}}]
    if chain:
        models.append({"name": "cls", "model": "classifier", "batch_size": BATCH})
    doc = {
        "input": inp,
        "pipeline": {"models": models},
        "output": {"path": str(out), "format": "parquet"},
        "shards": {"records": SHARD},
        "workers": {"count": CORES, "cpus": 1},
        "backend": backend,
    }
    path = d / "job.yaml"
    path.write_text(json.dumps(doc))
    return path


def batchwise(job: Path, kill_every: float = 0.0) -> tuple[int, int]:
    """Run a job to the end; kill a random local worker every ``kill_every`` s if > 0."""
    master = Master(job)
    rng = random.Random(0)
    kills, last = 0, time.monotonic()
    try:
        while not master.step():
            if kill_every and master.procs and time.monotonic() - last >= kill_every:
                rng.choice(list(master.procs.values())).send_signal(signal.SIGKILL)
                kills, last = kills + 1, time.monotonic()
            time.sleep(0.2)
    finally:
        master.backend.close()
    ids = [r["id"] for p in master.out_dir.glob("part-*.parquet") for r in read_part(p)]
    if len(ids) != len(set(ids)):
        raise AssertionError(f"duplicated output: {len(ids) - len(set(ids))} rows")
    return len(ids), kills


# -- CPU ceiling ---------------------------------------------------------------
def ceiling(paths: list[str], sample: int) -> dict[str, float]:
    """CPU seconds per record of each stage alone; records/s on all cores."""
    sample_paths = paths[:sample]
    enc = MiniLMEncoder(threads=1)
    for i in range(0, 256, BATCH):  # warm up on real batches (kernels for their shapes)
        enc([Path(p).read_text() for p in sample_paths[i : i + BATCH]])
    warm = Path(tempfile.mkdtemp())
    write_part([("w", enc(["warm up"])[0])], warm / "w.parquet", "parquet")  # imports
    shutil.rmtree(warm)
    t = time.process_time()
    texts = [Path(p).read_text() for p in sample_paths]
    read = (time.process_time() - t) / sample

    def infer(order: list[int]) -> tuple[float, list]:
        outs: dict[int, Any] = {}
        t = time.process_time()
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            for j, e in zip(idx, enc([texts[k] for k in idx]), strict=True):
                outs[j] = e
        return (time.process_time() - t) / sample, [outs[i] for i in range(sample)]

    infer_file, outs = infer(list(range(sample)))
    sorted_order: list[int] = []
    for s in range(0, sample, SHARD):
        sorted_order += sorted(range(s, min(s + SHARD, sample)), key=lambda i: len(texts[i]))
    infer_sorted, _ = infer(sorted_order)
    tmp = Path(tempfile.mkdtemp())
    t = time.process_time()
    for s in range(0, sample, SHARD):
        rows = list(zip(sample_paths[s : s + SHARD], outs[s : s + SHARD], strict=True))
        write_part(rows, tmp / f"p{s}.parquet", "parquet")
    write = (time.process_time() - t) / sample
    shutil.rmtree(tmp)
    io = read + write
    return {
        "read_ms": read * 1e3, "infer_file_order_ms": infer_file * 1e3,
        "infer_sorted_ms": infer_sorted * 1e3, "write_ms": write * 1e3,
        "ceiling_file_order": CORES / (io + infer_file),
        "ceiling_sorted": CORES / (io + infer_sorted),
    }  # fmt: skip


# -- harness -------------------------------------------------------------------
def timed(fn: Callable[[Path], int], expect: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="bw-bench-"))
    try:
        t = time.perf_counter()
        n = fn(out)
        wall = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if n != expect:
        raise AssertionError(f"wrote {n} records, expected {expect}")
    return expect / wall


def init_ray(home: Path) -> None:
    import ray

    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        sys.exit("run this benchmark in a loopback-only namespace (see the module docstring)")
    (home / "ray_bootstrap_config.yaml").write_text("")
    os.environ.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0",
                      RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # fmt: skip
    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("out/bench-data"))
    ap.add_argument("--records", type=int, default=4000, help="records per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kill-records", type=int, default=20000)
    ap.add_argument("--kill-every", type=float, default=20.0, help="s between worker kills")
    ap.add_argument("--delay-ms", type=float, default=5.0, help="S3 first-byte latency added")
    ap.add_argument("--skip", default="", help="comma list of cases to skip")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.data = args.data.resolve()
    skip = set(filter(None, args.skip.split(",")))

    def log(*a: Any) -> None:
        print(*a, file=sys.stderr, flush=True)

    gen_data.generate(args.data, max(20000, args.records, args.kill_records), 0)
    paths = files_for(args.data, args.records)
    n = args.records
    result: dict[str, Any] = {"records": n, "cores": CORES, "repeats": args.repeats}
    if "ceiling" not in skip:  # before Ray starts its daemons: nothing else runs
        result["ceiling"] = ceiling(paths, min(n, 2000))
        log("ceiling", result["ceiling"])
    init_ray(Path(tempfile.mkdtemp(prefix="bw-home-")))
    work = Path(tempfile.mkdtemp(prefix="bw-jobs-"))

    def bw(backend: str, chain: bool = False, inp: dict | None = None) -> Callable[[Path], int]:
        def run(out: Path) -> int:
            d = Path(tempfile.mkdtemp(dir=work))
            spec = inp or {"kind": "files", "path": str(args.data / "files" / "*" / "*.txt")}
            return batchwise(job_file(d, spec, out, backend, chain))[0]

        return run

    # Local disk: the subset is chosen by a list file of paths for naive and Ray Data and by
    # a folder of links for batchwise (its input is a glob).
    subset = work / "subset"
    subset.mkdir()
    for p in paths:
        (subset / Path(p).name).symlink_to(p)
    local_inp = {"kind": "files", "path": str(subset / "*.txt")}
    cases: dict[str, Callable[[Path], int]] = {
        "naive": lambda out: naive(paths, out),
        "ray-data": lambda out: ray_data(paths, out),
        "batchwise-local": bw("local", inp=local_inp),
        "batchwise-ray": bw("ray", inp=local_inp),
        "chain-naive": lambda out: naive(paths, out, chain=True),
        "chain-batchwise": bw("local", chain=True, inp=local_inp),
    }
    rates: dict[str, list[float]] = {k: [] for k in cases if k not in skip}
    for rep in range(args.repeats):
        order = list(rates) if rep % 2 == 0 else list(reversed(rates))
        for name in order:
            rates[name].append(timed(cases[name], n))
            log(f"repeat {rep + 1}/{args.repeats} {name}: {rates[name][-1]:.0f} records/s")
    result["local"] = {k: {"median": statistics.median(v), "runs": v} for k, v in rates.items()}

    if "s3" not in skip:
        result["s3"] = s3_cases(args, paths, work, bw, log)
    if "kills" not in skip:
        kp = files_for(args.data, args.kill_records)
        ksub = work / "kill-subset"
        ksub.mkdir()
        for p in kp:
            (ksub / Path(p).name).symlink_to(p)
        kinp = {"kind": "files", "path": str(ksub / "*.txt")}
        res = {}
        for label, every in (("no-kills", 0.0), ("kills", args.kill_every)):
            out = Path(tempfile.mkdtemp(dir=work))
            d = Path(tempfile.mkdtemp(dir=work))
            t = time.perf_counter()
            got, kills = batchwise(job_file(d, kinp, out, "local"), every)
            wall = time.perf_counter() - t
            assert got == args.kill_records, (got, args.kill_records)
            res[label] = {"records_per_s": got / wall, "kills": kills, "exactly_once": True}
            log(label, res[label])
        res["ratio"] = res["kills"]["records_per_s"] / res["no-kills"]["records_per_s"]
        result["kills"] = res
    shutil.rmtree(work, ignore_errors=True)
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return result


def s3_cases(args: Any, paths: list[str], work: Path, bw: Callable, log: Callable) -> dict:
    import remote_store as rs

    n = len(paths)
    src = work / "s3-src"
    src.mkdir()
    for p in paths:
        (src / Path(p).name).symlink_to(p)
    with rs.MotoServer() as moto:
        moto.load_dir("corpus", src)
        with rs.DelayProxy("127.0.0.1", moto.port, delay_ms=args.delay_ms) as proxy:
            opts = rs.s3_storage_options(proxy.endpoint)
            s3paths = [f"s3://corpus/{Path(p).name}" for p in paths]
            inp = {"kind": "files", "path": "s3://corpus/*.txt", "storage_options": opts}
            cases = {
                "s3-naive": lambda out: naive(s3paths, out, opts=opts),
                "s3-ray-data": lambda out: ray_data(s3paths, out, opts=opts),
                "s3-batchwise": bw("local", inp=inp),
            }
            rates: dict[str, list[float]] = {k: [] for k in cases}
            for rep in range(args.repeats):
                for name in cases if rep % 2 == 0 else reversed(cases):
                    rates[name].append(timed(cases[name], n))
                    log(f"repeat {rep + 1} {name}: {rates[name][-1]:.0f} records/s")
    return {k: {"median": statistics.median(v), "runs": v} for k, v in rates.items()}


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{r['records']} records (MiniLM, batch {BATCH}), {r['cores']} cores, "
          f"median of {r['repeats']}")  # fmt: skip
    c = r.get("ceiling")
    if c:
        print(f"CPU cost per record (ms): read {c['read_ms']:.3f}, infer file order "
              f"{c['infer_file_order_ms']:.2f}, infer sorted {c['infer_sorted_ms']:.2f}, "
              f"write {c['write_ms']:.3f}")  # fmt: skip
        print(f"CPU ceiling: {c['ceiling_file_order']:.0f} records/s (file order), "
              f"{c['ceiling_sorted']:.0f} (length-sorted shards)")  # fmt: skip
    rows = {**r.get("local", {}), **r.get("s3", {})}
    base = {
        k: rows.get(k, {}).get("median")
        for k in ("naive", "ray-data", "s3-naive", "s3-ray-data", "chain-naive")
    }
    print(f"{'case':<18}{'records/s':>10}{'vs naive':>10}{'vs Ray Data':>13}{'vs ceiling':>12}")
    for name, v in rows.items():
        s3 = name.startswith("s3-")
        nv = base["chain-naive" if name.startswith("chain") else "s3-naive" if s3 else "naive"]
        rd = None if name.startswith("chain") else base["s3-ray-data" if s3 else "ray-data"]
        ceil = c["ceiling_sorted"] if c and not s3 and not name.startswith("chain") else None
        m = v["median"]
        cols = [f"{m / x:.2f}x" if x else "-" for x in (nv, rd, ceil)]
        print(f"{name:<18}{m:>10.0f}{cols[0]:>10}{cols[1]:>13}{cols[2]:>12}")
    k = r.get("kills")
    if k:
        print(f"kills: {k['kills']['kills']} kill -9s, {k['kills']['records_per_s']:.0f} vs "
              f"{k['no-kills']['records_per_s']:.0f} records/s fault-free = {k['ratio']:.2f}x, "
              "exactly once")  # fmt: skip


if __name__ == "__main__":
    main()
