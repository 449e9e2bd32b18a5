"""Placement policies: feasibility and scores at their edges, the candidate tiers, gangs,
the LLM split, each baseline's reservation, ours' drains, the factory, and — on random
workloads — every invariant for every scheduler."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchwise.errors import ConfigError
from batchwise.gpu.placement import (
    Capacity,
    ClusterView,
    DiluPolicy,
    ExclusivePolicy,
    InflessLimitPolicy,
    InflessRequestPolicy,
    Move,
    Placement,
    PlacementPolicy,
    SchedulerName,
    Share,
    best_gpu,
    candidate_tiers,
    dilu_score,
    fits,
    gang_first_fit,
    make_policy,
    memory_split,
)
from batchwise.gpu.repack import RepackPolicy, SplitCheck
from batchwise.gpu.workload import Action, Event, GpuInstance, Kind, Workload
from batchwise.sim.gpu_cluster import GpuCluster, exclusive_peak, simulate


def mk(name: str, kind: Kind = Kind.INFERENCE, req: float = 0.3, lim: float = 0.5,
       mem: Sequence[float] = (6,), function: str | None = None) -> GpuInstance:  # fmt: skip
    memory = tuple(float(m) for m in mem)
    return GpuInstance(name=name, kind=kind, gpu_num=len(mem), sm_request=req, sm_limit=lim,
                       memory_gb=memory, function=function or name)  # fmt: skip


def put(cluster: GpuCluster, inst: GpuInstance, *gpus: int, req: float | None = None) -> None:
    """Place ``inst`` by hand (one share per GPU, its own memory per share)."""
    r = inst.sm_request if req is None else req
    mems = inst.memory_gb if len(gpus) == len(inst.memory_gb) else [inst.memory_gb[0]]
    shares = tuple(Share(g, r, max(r, inst.sm_limit), m) for g, m in zip(gpus, mems, strict=True))
    cluster.add(inst, Placement(inst.name, shares))


def cluster(nodes: int = 4, **cap: object) -> GpuCluster:
    return GpuCluster(Capacity(**cap), nodes)  # type: ignore[arg-type]


# --- feasibility, scores ---------------------------------------------------------------


def test_fits_at_each_capacity_edge_with_rounding() -> None:
    c = cluster(1)
    put(c, mk("a", req=0.55, lim=0.7, mem=(34,)), 0)
    v = c.view
    assert fits(v, 0.45, 0.8, 6.0)[0]  # 0.55 + 0.45 == 1.0, 0.7 + 0.8 == 1.5, 34 + 6 == 40
    assert not fits(v, 0.46, 0.5, 1.0)[0]  # request over 1
    assert not fits(v, 0.1, 0.81, 1.0)[0]  # limit over 1.5
    assert not fits(v, 0.1, 0.5, 6.5)[0]  # memory over 40
    assert fits(v, 1.0, 1.5, 40.0)[1:].all()  # idle GPUs take anything that fits one GPU


def test_dilu_score_prefers_the_tightest_fit_and_ties_go_low() -> None:
    c = cluster(1)
    put(c, mk("a", req=0.5, mem=(10,)), 1)
    put(c, mk("b", req=0.2, mem=(30,)), 2)
    put(c, mk("c", req=0.5, mem=(10,)), 3)
    v = c.view
    s = dilu_score(v, 0.3, 5.0)
    # GPU 1: 0.6*0.2 + 0.4*(25/40) = 0.37; GPU 2: 0.6*0.5 + 0.4*(5/40) = 0.35
    assert s[2] < s[1] == s[3] < s[0]
    assert best_gpu(v, v.active, s) == 2
    assert best_gpu(v, v.active & (np.arange(4) != 2), s) == 1  # tie 1 vs 3: lowest index
    assert best_gpu(v, np.zeros(4, dtype=bool), s) is None


def test_tiers_put_a_replica_next_to_the_gang_its_sibling_shares() -> None:
    c = cluster(2)
    put(c, mk("train", Kind.TRAINING, 0.5, 0.7, (20, 20)), 0, 1)
    put(c, mk("bert-1", function="bert"), 0)
    put(c, mk("other"), 4)
    tier1, others, idle = candidate_tiers(c.view, mk("bert-2", function="bert"))
    assert np.flatnonzero(tier1).tolist() == [1]  # the gang's other GPU, not the sibling's
    assert np.flatnonzero(others).tolist() == [0, 4]
    assert idle.sum() == 5
    # Dilu places the replica in tier 1 although GPU 4 is the tighter fit by score
    p = DiluPolicy().place(c.view, mk("bert-2", function="bert"))
    assert p is not None and p.gpus == (1,)
    empty = candidate_tiers(c.view, mk("solo"))[0]
    assert not empty.any()  # the authors' files: every name is its own function


def test_gang_first_fit_uses_active_room_then_one_fresh_node() -> None:
    c = cluster(3)
    for g in (0, 1, 2):
        put(c, mk(f"small{g}", mem=(5,)), g)
    put(c, mk("full", mem=(38,)), 3)
    gang2 = mk("t", Kind.TRAINING, 0.5, 0.7, (30, 30))
    p = gang_first_fit(c.view, gang2, 0.5, 0.7)
    assert p is not None and p.gpus == (0, 1)  # two active GPUs of node 0 have room
    p3 = gang_first_fit(c.view, mk("t3", Kind.TRAINING, 0.5, 0.7, (30,) * 3), 0.5, 0.7)
    assert p3 is not None and p3.gpus == (0, 1, 2)
    p4 = gang_first_fit(c.view, mk("t4", Kind.TRAINING, 0.5, 0.7, (30,) * 4), 0.5, 0.7)
    assert p4 is not None and p4.gpus == (4, 5, 6, 7)  # node 0 has 3 of 4: never spans nodes
    c.remove("full")
    p4 = gang_first_fit(c.view, mk("t4", Kind.TRAINING, 0.5, 0.7, (30,) * 4), 0.5, 0.7)
    assert p4 is not None and p4.gpus == (0, 1, 2, 3)  # active room first, then idle


def test_memory_split_fills_the_fullest_gpus_first_and_reserves_the_request() -> None:
    c = cluster(2)
    put(c, mk("t", Kind.TRAINING, 0.4, 0.6, (30, 25, 35, 40)), 0, 1, 2, 3)
    llm = mk("llm", Kind.LLM_INFERENCE, 0.5, 0.8, (28,))
    p = memory_split(c.view, llm, 0.5, 0.8)
    assert p is not None
    assert [(s.gpu, s.memory_gb) for s in p.shares] == [(2, 5.0), (0, 10.0), (1, 13.0)]
    assert all((s.sm_request, s.sm_limit) == (0.5, 0.5) for s in p.shares)
    assert memory_split(c.view, mk("huge", Kind.LLM_INFERENCE, 0.5, 0.8, (31,)), 0.5, 0.8) is None
    # Dilu's check: room for the full limit (0.6 + 0.95 > 1.5 on every GPU)
    assert memory_split(c.view, llm, 0.5, 0.95) is None


def test_dilu_llm_order_single_then_split_then_idle() -> None:
    c = cluster(2)
    put(c, mk("t", Kind.TRAINING, 0.4, 0.6, (25, 25, 25, 25)), 0, 1, 2, 3)
    dilu = DiluPolicy()
    assert dilu.place(c.view, mk("l1", Kind.LLM_INFERENCE, 0.5, 0.7, (20,))).gpus == (0, 1)
    put(c, mk("lone", Kind.LLM_INFERENCE, 0.3, 0.5, (20,)), 4)
    assert dilu.place(c.view, mk("l2", Kind.LLM_INFERENCE, 0.5, 0.7, (20,))).gpus == (4,)
    c2 = cluster(2)
    put(c2, mk("t", Kind.TRAINING, 0.7, 0.9, (25, 25)), 0, 1)
    assert dilu.place(c2.view, mk("l3", Kind.LLM_INFERENCE, 0.5, 0.7, (20,))).gpus == (2,)


@pytest.mark.parametrize(
    ("policy", "want"),
    [
        (InflessLimitPolicy(), (0.5, 0.5)),
        (InflessRequestPolicy(), (0.3, 0.3)),
        (DiluPolicy(), (0.3, 0.5)),
        (ExclusivePolicy(), (0.3, 0.5)),
    ],
)
def test_what_each_baseline_reserves(policy: PlacementPolicy, want: tuple[float, float]) -> None:
    p = policy.place(cluster(1).view, mk("a", req=0.3, lim=0.5))
    assert p is not None
    (share,) = p.shares
    assert (share.sm_request, share.sm_limit) == want


def test_exclusive_never_shares() -> None:
    c = cluster(2)
    put(c, mk("a"), 0)
    put(c, mk("t", Kind.TRAINING, 0.4, 0.6, (25, 25)), 4, 5)
    assert ExclusivePolicy().place(c.view, mk("b")).gpus == (1,)
    assert ExclusivePolicy().place(c.view, mk("t2", Kind.TRAINING, 0.4, 0.6, (25,) * 4)) is None


# --- ours ------------------------------------------------------------------------------


def test_repack_prefers_training_gpus_for_inference() -> None:
    c = cluster(2)
    put(c, mk("t", Kind.TRAINING, 0.5, 0.7, (30, 30)), 0, 1)
    put(c, mk("i", req=0.65, mem=(30,)), 4)
    p = RepackPolicy().place(c.view, mk("new", req=0.3, mem=(6,)))
    assert p is not None and p.gpus == (0,)  # Dilu's score alone would pick GPU 4
    assert DiluPolicy().place(c.view, mk("new", req=0.3, mem=(6,))).gpus == (4,)


def test_repack_splits_over_the_node_needing_fewest_pieces() -> None:
    c = cluster(3)
    put(c, mk("t", Kind.TRAINING, 0.4, 0.6, (35, 35, 35, 35)), 0, 1, 2, 3)  # 4 x 5 GB free
    put(c, mk("u", Kind.TRAINING, 0.4, 0.6, (25, 25)), 4, 5)  # 2 x 15 GB free
    llm = mk("llm", Kind.LLM_INFERENCE, 0.5, 0.95, (20,))
    p = RepackPolicy().place(c.view, llm)
    assert p is not None and sorted(p.gpus) == [4, 5]
    assert DiluPolicy().place(c.view, llm).gpus == (6,)  # its check: 0.6 + 0.95 > 1.5
    strict = RepackPolicy(split_check=SplitCheck.LIMIT).place(c.view, llm)
    assert strict is not None and len(strict.gpus) == 1


def test_repack_drains_a_gpu_whole_or_not_at_all() -> None:
    c = cluster(2)
    put(c, mk("t", Kind.TRAINING, 0.4, 0.6, (30, 30)), 0, 1)
    put(c, mk("a", req=0.3, mem=(6,)), 4)
    put(c, mk("b", req=0.3, mem=(6,)), 4)
    moves = RepackPolicy().on_delete(c.view, mk("gone"))
    assert {m.instance for m in moves} == {"a", "b"}
    assert {m.to.gpus for m in moves} == {(0,), (1,)}
    put(c, mk("c", req=0.3, mem=(6,)), 5)
    put(c, mk("d", req=0.3, mem=(30,)), 5)  # d fits nowhere else: GPU 5 stays as it is
    later = RepackPolicy(move_budget=2).on_delete(c.view, mk("gone"))
    assert {m.instance for m in later} == {"a", "b"}
    assert RepackPolicy(move_budget=1).on_delete(c.view, mk("gone")) == ()


def test_repack_respects_the_per_instance_move_cap() -> None:
    c = cluster(2)
    put(c, mk("t", Kind.TRAINING, 0.4, 0.6, (30, 30)), 0, 1)
    put(c, mk("a", mem=(6,)), 4)
    c.moves["a"] = 3
    assert RepackPolicy(max_moves_per_instance=3).on_delete(c.view, mk("gone")) == ()
    assert len(RepackPolicy(max_moves_per_instance=4).on_delete(c.view, mk("gone"))) == 1


def test_repack_rejects_negative_budgets() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        RepackPolicy(move_budget=-1)


# --- factory ---------------------------------------------------------------------------


def test_factory_knows_every_name_and_lists_them_on_a_typo() -> None:
    for name in SchedulerName:
        assert make_policy(name).name == name.value
    assert make_policy("repack", move_budget=3).move_budget == 3  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        make_policy("dilu2")
    assert info.value.field == "--scheduler"
    assert all(n.value in info.value.message for n in SchedulerName)
    with pytest.raises(ConfigError, match="no options"):
        make_policy("dilu", move_budget=3)


# --- invariants on random workloads -----------------------------------------------------

SPEC = st.tuples(
    st.sampled_from(list(Kind)),
    st.sampled_from([1, 2, 4]),
    st.integers(1, 10),  # request in tenths
    st.integers(0, 6),  # limit - request, in tenths
    st.integers(1, 40),  # memory per GPU (GB)
    st.one_of(st.none(), st.integers(1, 40)),  # lifetime (s); None: never deleted
)


def workload_of(specs: list[tuple[Kind, int, int, int, int, int | None]], gpn: int) -> Workload:
    """Starts one per second, each delete ``life`` seconds later (as the parser would)."""
    events: list[tuple[float, int, int, Action, GpuInstance]] = []
    for i, (kind, n, r10, d10, mem, life) in enumerate(specs):
        n = min(n, gpn) if kind is Kind.TRAINING else 1
        req = r10 / 10
        inst = mk(f"{kind.value}-{i}", kind, req, min(1.5, req + d10 / 10), (mem,) * n)
        events.append((float(i), 1, i, Action.START, inst))
        if life is not None:
            events.append((float(i + life), 0, i, Action.DELETE, inst))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return Workload("<random>", tuple(Event(t, a, x, k + 1)
                                      for k, (t, _, _, a, x) in enumerate(events)))  # fmt: skip


class Counting(PlacementPolicy):
    """Ours, recording how many moves each event returns and which instances move."""

    name = "repack"

    def __init__(self, inner: RepackPolicy) -> None:
        self.inner = inner
        self.per_event: list[int] = []
        self.moved: list[str] = []

    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        return self.inner.place(view, inst)

    def _count(self, moves: tuple[Move, ...], view: ClusterView) -> tuple[Move, ...]:
        self.per_event.append(len(moves))
        self.moved += [m.instance for m in moves]
        for m in moves:
            assert view.instances[m.instance].kind is not Kind.TRAINING
        return moves

    def on_delete(self, view: ClusterView, deleted: GpuInstance) -> tuple[Move, ...]:
        return self._count(self.inner.on_delete(view, deleted), view)

    def after_place(self, view: ClusterView, placed: GpuInstance) -> tuple[Move, ...]:
        return self._count(self.inner.after_place(view, placed), view)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(SPEC, min_size=1, max_size=40), gpn=st.sampled_from([2, 4]))
def test_every_scheduler_holds_every_invariant(specs: list, gpn: int) -> None:
    w = workload_of(specs, gpn)
    cap = Capacity(gpus_per_node=gpn)
    for name in SchedulerName:
        r = simulate(w, make_policy(name), cap, deep_checks=True)  # raises on any violation
        assert r.invariant_violations == 0
        assert 0 <= r.sm_fragmentation <= 1 and 0 <= r.memory_fragmentation <= 1
        if name is SchedulerName.EXCLUSIVE:
            assert r.peak_gpus == exclusive_peak(w)
    counting = Counting(RepackPolicy(move_budget=3, max_moves_per_instance=2))
    simulate(w, counting, cap, deep_checks=True)
    assert all(k <= 3 for k in counting.per_event)
    assert all(counting.moved.count(n) <= 2 for n in set(counting.moved))
