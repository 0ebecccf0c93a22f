"""Indicator kernels: our NumPy/Numba twins (and CuPy kernels on a GPU) against pandas and vectorbt, same arrays.

Run: `.venv/bin/python benchmarks/bench_indicators.py [--sizes 1000x1000,100000x250,1000000x250]`. Every kernel on
each (bars × assets) float64 array; one window (20, RSI/ATR 14); the correlation's peer is NumPy's `corrcoef`
(pandas' `DataFrame.corr` is slower still). Prints a table of median milliseconds with each peer's time as a ratio
to ours, then one JSON line. Each kernel and size runs in its own process (the largest arrays are 2 GB each). With
a GPU it adds the CuPy column and the smallest size at which the GPU beats our CPU twin. `--quick` (run by
`make test`): every kernel at 500 × 50 only, all in one process, a few seconds; its figures say only that it runs.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time
import numpy as np
import pandas as pd
import vectorbt as vbt
from aiplatform.core import gpu_info
from aiplatform.trading import gpu

W = 20

def median_ms(fn, repeats, sync=lambda: None):
    "Median wall time of `fn()` in milliseconds after one warm-up call."
    fn(); sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); sync(); times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)

def pandas_rsi(df, w):
    d = df.diff()
    up = d.clip(lower=0).ewm(alpha=1 / w, adjust=False, min_periods=w).mean()
    down = (-d).clip(lower=0).ewm(alpha=1 / w, adjust=False, min_periods=w).mean()
    return 100 - 100 / (1 + up / down)

def pandas_atr(h, l, c, w):
    pc = c.shift()
    tr = np.maximum(h - l, np.maximum((h - pc).abs(), (l - pc).abs()))
    return tr.ewm(alpha=1 / w, adjust=False, min_periods=w).mean()

NEEDS_HLV = {"atr", "vwap"}
VECTORBT = {"rolling_mean", "rolling_std", "bollinger", "ema", "rsi", "atr"}  # the kernels vectorbt has

def kernels(x, h, l, v):
    "name → (ours, pandas (NumPy for corr), vectorbt or None), each a no-argument callable over the same data."
    df = pd.DataFrame(x, copy=False)
    frame = lambda a: pd.DataFrame(a, copy=False)
    return {
        "rolling_mean": (lambda: gpu.rolling_mean(x, W), lambda: df.rolling(W).mean(), lambda: vbt.MA.run(df, W).ma),
        "rolling_std": (lambda: gpu.rolling_std(x, W), lambda: df.rolling(W).std(), lambda: vbt.MSTD.run(df, W).mstd),
        "zscore": (lambda: gpu.zscore(x, W), lambda: (df - df.rolling(W).mean()) / df.rolling(W).std(), None),
        "bollinger": (lambda: gpu.bollinger(x, W), lambda: (df.rolling(W).mean(), df.rolling(W).std(ddof=0)),
                      lambda: vbt.BBANDS.run(df, W).upper),
        "ema": (lambda: gpu.ema(x, W), lambda: df.ewm(span=W, adjust=False, min_periods=W).mean(),
                lambda: vbt.MA.run(df, W, ewm=True).ma),
        "rsi": (lambda: gpu.rsi(x, 14), lambda: pandas_rsi(df, 14), lambda: vbt.RSI.run(df, 14, ewm=True).rsi),
        "atr": (lambda: gpu.atr(h, l, x, 14), lambda: pandas_atr(frame(h), frame(l), df, 14),
                lambda: vbt.ATR.run(frame(h), frame(l), df, 14, ewm=True).atr),
        "vwap": (lambda: gpu.vwap(h, l, x, v, W), lambda: ((frame(h) + frame(l) + df) / 3 * frame(v)).rolling(W).sum() / frame(v).rolling(W).sum(),
                 None),
        "corr": (lambda: gpu.corr(x), lambda: np.corrcoef(x[1:] / x[:-1] - 1, rowvar=False), None),  # NumPy: faster than pandas
    }

def one(names, n, m):
    "Time kernels `names` at (n × m) in this process: ours, the peers and, with a GPU, CuPy; a JSON line per median ms."
    repeats = 7 if n * m <= 1e6 else 5 if n * m <= 3e7 else 3
    for name in names:
        x, h, l, v = data(n, m, with_hlv=name in NEEDS_HLV)
        ours, theirs, vb = kernels(x, h, l, v)[name]
        for key, fn in (("ours_ms", ours), ("peer_ms", theirs), ("vectorbt_ms", vb)):  # a line each: a peer killed for memory loses only itself
            if fn: print(json.dumps({"kernel": name, key: median_ms(fn, repeats)}), flush=True)
        if gpu_info():
            import cupy
            dev = [gpu.to_device(a) if a is not None else None for a in (x, h, l, v)]
            print(json.dumps({"kernel": name, "gpu_ms": median_ms(kernels(*dev)[name][0], max(repeats, 10), cupy.cuda.Device().synchronize)}))

def data(n, m, seed=0, with_hlv=True):
    "Random-walk closes, and highs, lows and volumes when asked (a 1,000,000 × 250 array is 2 GB)."
    rng = np.random.default_rng(seed)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, m)), axis=0))
    if not with_hlv: return x, None, None, None
    return x, x * 1.005, x * 0.995, rng.integers(1, 1000, (n, m)).astype(float)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000x1000,100000x250,1000000x250")
    ap.add_argument("--kernels", help="comma-separated subset, e.g. ema,rsi")
    ap.add_argument("--quick", action="store_true", help="every kernel at 500x50 in one child process (a few seconds)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # NAME[,NAME...]:NxM, run by main in a child process
    args = ap.parse_args()
    if args.one:
        names, size = args.one.split(":")
        return one(names.split(","), *map(int, size.split("x")))
    sizes = [tuple(map(int, s.split("x"))) for s in ("500x50" if args.quick else args.sizes).split(",")]
    names = args.kernels.split(",") if args.kernels else list(kernels(*data(3, 2)))
    groups = [names] if args.quick else [[name] for name in names]  # each kernel in its own process, but for --quick
    card, results = gpu_info(), {}
    for n, m in sizes:
        for group in groups:
            r = subprocess.run([sys.executable, __file__, "--one", f"{','.join(group)}:{n}x{m}"], capture_output=True, text=True)
            got = {name: dict(vectorbt_ms=None) for name in group}
            for line in r.stdout.splitlines():
                t = json.loads(line)
                got[t.pop("kernel")].update(t)
            for name, t in got.items():
                if "ours_ms" not in t or "peer_ms" not in t: raise SystemExit(f"{name} at {n}x{m} failed (exit status {r.returncode}):\n{r.stderr[-2000:]}")
                killed = r.returncode != 0 and name in VECTORBT and t["vectorbt_ms"] is None  # vectorbt ran out of memory
                results[f"{name}_{n}x{m}"] = {k: round(val, 3) if val is not None else None for k, val in t.items()} | (
                    dict(vectorbt="killed: out of memory") if killed else {})
                peer = "numpy " if name == "corr" else "pandas"
                vb = (f"vectorbt {t['vectorbt_ms']:10.1f} ms ({t['vectorbt_ms'] / t['ours_ms']:5.1f}x)" if t["vectorbt_ms"] else
                      "vectorbt out of memory     " if killed else "vectorbt        n/a          ")
                on_gpu = f"   gpu {t['gpu_ms']:8.3f} ms ({t['ours_ms'] / t['gpu_ms']:6.1f}x)" if t.get("gpu_ms") else ""
                print(f"{n:>9,} x {m:<5,} {name:<13} ours {t['ours_ms']:10.1f} ms   {peer} {t['peer_ms']:10.1f} ms "
                      f"({t['peer_ms'] / t['ours_ms']:5.1f}x)   {vb}{on_gpu}", flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; GPU: {card['name'] if card else 'none'}")
    summary = dict(gpu=card["name"] if card else None, results=results)
    if card:
        summary["gpu_wins_from"] = {name: next((f"{n}x{m}" for n, m in sizes if results[f"{name}_{n}x{m}"]["gpu_ms"] <
                                                results[f"{name}_{n}x{m}"]["ours_ms"]), None) for name in {k.rsplit("_", 1)[0] for k in results}}
    ratios = lambda key: [r[key] / r["ours_ms"] for r in results.values() if r.get(key)]
    summary["median_speedup_vs_pandas"] = round(statistics.median(ratios("peer_ms")), 2)
    summary["median_speedup_vs_vectorbt"] = round(statistics.median(ratios("vectorbt_ms")), 2)
    if args.quick: summary["quick"] = True
    print(json.dumps(summary))

if __name__ == "__main__":
    main()
