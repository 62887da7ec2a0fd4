"""Work on a few threads in order: for the driver's readers and writers, whose Arrow and zlib calls release
the GIL."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator


def ordered_map(fn: Callable, items: Iterable, threads: int) -> Iterator:
    """``map(fn, items)`` on ``threads`` threads, in order, with at most 2 * threads items in flight (so a
    large file is never all in memory as text)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        flight: deque = deque()
        for item in items:
            flight.append(pool.submit(fn, item))
            if len(flight) >= 2 * threads:
                yield flight.popleft().result()
        while flight:
            yield flight.popleft().result()
