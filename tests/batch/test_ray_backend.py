"""The Ray backend on a real multi-node Ray cluster (``ray.cluster_utils.Cluster``).

Ray must never touch the network: these tests run only inside a network namespace
that has nothing but loopback (``make test`` runs them under ``unshare --net``), with
usage stats off, no dashboard and a temporary HOME.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from jobfiles import write_job

from batchwise.batch.master import Master
from batchwise.batch.sinks import read_part

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

FIXTURES = Path(__file__).parent / "fixtures"
N = 240


@pytest.fixture(scope="module")
def cluster(ray_sandbox):
    from ray.cluster_utils import Cluster

    args = {"include_dashboard": False, "node_ip_address": "127.0.0.1"}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **args})
    nodes = [c.add_node(num_cpus=1, **args) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    yield c, nodes, args
    ray.shutdown()
    c.shutdown()


def make_job(tmp_path: Path, address: str) -> Path:
    shutil.copy(FIXTURES / "bw_test_models.py", tmp_path)
    settings = (
        "shards: {records: 10}\nworkers: {count: 2}\nbackend: ray\n"
        f"ray: {{address: '{address}'}}\nlease_s: 5\n"
    )
    return write_job(tmp_path, N, "bw_test_models:SlowDouble", settings, fmt="parquet")


def test_ray_job_survives_node_removal_exactly_once(cluster, tmp_path):
    c, nodes, args = cluster
    master = Master(make_job(tmp_path, c.address))
    deadline = time.monotonic() + 180
    removed = False
    while not master.step():
        assert time.monotonic() < deadline, "job did not finish"
        committed = master.timeline[-1]["records"]
        if not removed and committed >= 40:
            c.remove_node(nodes[0])  # a node (with its worker actor) goes away mid-job
            c.add_node(num_cpus=1, **args)  # capacity comes back elsewhere
            removed = True
        time.sleep(0.2)
    master.backend.close()
    report = master.report()
    assert removed and report["worker_restarts"] >= 1
    assert report["shards"]["committed"] == N // 10 and report["records"] == N
    rows = [r for p in sorted(master.out_dir.glob("part-*.parquet")) for r in read_part(p)]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N  # exactly once
    assert all(r["output"] == 2 * (int(r["id"].split(":")[1]) - 1) for r in rows)  # v = row - 1
