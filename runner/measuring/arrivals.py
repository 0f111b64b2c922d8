"""When an open-loop sweep point sends each request: Poisson arrivals at a rate, seeded.

Open loop sends on the clock whatever the server's pace (a closed loop waits for an answer before the next
request), so a server slower than the rate queues and its latency shows it (``settings.sweep_rates``).
"""

from __future__ import annotations

import math

import numpy as np


def poisson_arrivals(rate: float, count: int, seed: int) -> list[float]:
    """The send offsets, seconds from the point's start, of ``count`` requests arriving as a Poisson process
    at ``rate`` requests per second: cumulative exponential gaps from numpy's Generator seeded by ``seed``."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate {rate!r}: a Poisson rate is a finite number of requests per second above 0")
    if count < 0:
        raise ValueError(f"count {count!r}: a number of requests is 0 or more")
    # one stream per seed, scaled by the rate: the points of one sweep share the arrival pattern, so
    # rates differ only in pace, not in which requests happen to bunch up
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=count)
    return np.cumsum(gaps).tolist()
