"Timing helpers the benchmarks share (each benchmark runs as a script from this folder, which is then on `sys.path`)."
import time

def percentile(values, q) -> float:
    "The `q` quantile (0 to 1) of `values`, nearest-rank."
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]

def timed(fn, items) -> list:
    "Milliseconds of `fn(item)` for each item, after one call to warm up."
    fn(items[0])
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1e3)
    return out
