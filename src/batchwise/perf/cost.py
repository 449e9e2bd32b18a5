"""Cost of running batches on functions, per batch and per request.

Per batch: ``invocation + (vcpu*P_vcpu + mem*P_mem + gpu_mem*P_gpu) * billed(L_avg)``,
where ``billed`` rounds up to the price book's granularity (GPU functions on
Function Compute bill whole seconds). Per request, two estimates exist:

* ``full-batch`` (the paper's Eq. 6 and the authors' code): every batch holds ``b``
  requests, ``C = cost(b) / b``. The planners optimise this, so that our plans
  and costs are comparable with the paper's.
* ``expected`` (renewal-reward): the batch size is ``N = 1 + min(Poisson(R T_eq), b-1)``
  (first arrival opens the batch; it closes at T_eq or when full), and
  ``C = E[cost(N)] / E[N]``. The simulator measures this, so it is the honest
  prediction reported beside every plan.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from batchwise.config.prices import PriceBook
from batchwise.perf.functions import Function
from batchwise.perf.kinds import KINDS


def billed_duration(duration_s: float | np.ndarray, granularity_s: float) -> float | np.ndarray:
    """Round a duration up to the billing granularity (0 means exact)."""
    if granularity_s <= 0:
        return duration_s
    return np.ceil(np.asarray(duration_s) / granularity_s - 1e-9) * granularity_s


def unit_price(fn: Function, prices: PriceBook) -> float:
    """Price per billed second of this function (its kind's rule)."""
    return KINDS[fn.kind].unit_price(fn, prices)


def granularity(fn: Function, prices: PriceBook) -> float:
    return KINDS[fn.kind].granularity_s(prices)


def batch_cost(fn: Function, duration_s: float, prices: PriceBook) -> float:
    """What one invocation that runs ``duration_s`` seconds costs."""
    billed = float(billed_duration(duration_s, granularity(fn, prices)))
    return prices.invocation + unit_price(fn, prices) * billed


def batch_size_pmf(total_rate: float, t_eq: float, batch: int) -> np.ndarray:
    """P(N = n) for n = 1..batch when the batch closes at T_eq or when full."""
    if batch <= 1:
        return np.ones(1)
    lam = max(total_rate * max(t_eq, 0.0), 0.0)
    k = np.arange(batch - 1)
    pmf = np.empty(batch)
    if lam == 0.0:
        pmf[:-1] = k == 0
    else:  # Poisson pmf in log space (scipy.stats.poisson.pmf costs ~0.1 ms per call)
        pmf[:-1] = np.exp(k * math.log(lam) - lam - gammaln(k + 1))
    pmf[-1] = max(0.0, 1.0 - pmf[:-1].sum())
    return pmf


def pmf_mean(pmf: np.ndarray) -> float:
    """E[N] of a pmf over n = 1..len(pmf)."""
    return float(np.dot(pmf, np.arange(1, len(pmf) + 1)))


def expected_batch_size(total_rate: float, t_eq: float, batch: int) -> float:
    return pmf_mean(batch_size_pmf(total_rate, t_eq, batch))


def full_batch_cost_per_request(
    fn: Function, avg_latency_s: float, batch: int, prices: PriceBook
) -> float:
    """Eq. 6: cost of a full batch divided by its size."""
    return batch_cost(fn, avg_latency_s, prices) / batch


def expected_cost_per_request(
    fn: Function, avg_latencies_s: np.ndarray, total_rate: float, t_eq: float, prices: PriceBook
) -> float:
    """Renewal-reward cost per request; ``avg_latencies_s[n-1]`` is L_avg of a batch of n."""
    pmf = batch_size_pmf(total_rate, t_eq, len(avg_latencies_s))
    return expected_cost_given_pmf(fn, avg_latencies_s, pmf, prices)


def expected_cost_given_pmf(
    fn: Function, avg_latencies_s: np.ndarray, pmf: np.ndarray, prices: PriceBook
) -> float:
    """``E[cost(N)] / E[N]`` for a batch-size pmf already computed."""
    billed = billed_duration(np.asarray(avg_latencies_s), granularity(fn, prices))
    per_batch = prices.invocation + unit_price(fn, prices) * np.asarray(billed)
    mean_n = pmf_mean(pmf)
    return float(np.dot(pmf, per_batch)) / mean_n if mean_n > 0 else math.inf
