"""Timing shared by the benchmarks: functions measured side by side, min and median of several rounds."""

import statistics
import time


def timed(fns, repeats):
    """Seconds per call of each fn in `fns`: (min, median) over `repeats` rounds, after one warm-up.

    The functions take turns within every round, so a burst of load on a shared
    machine slows all of them alike instead of one.
    """
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [(min(t), statistics.median(t)) for t in times]
