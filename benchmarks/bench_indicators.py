"""Indicator kernels: our NumPy/Numba twins (and CuPy kernels on a GPU) against pandas and vectorbt, same arrays.

Run: `.venv/bin/python benchmarks/bench_indicators.py [--sizes 1000x1000,100000x250,1000000x250]`. Every kernel on
each (bars × assets) float64 array; one window (20, RSI/ATR 14); the correlation's peer is NumPy's `corrcoef`
(pandas' `DataFrame.corr` is slower still). Prints a table of median milliseconds with each
peer's time as a ratio to ours, then one JSON line. With a GPU it adds the CuPy column and the smallest size at
which the GPU beats our CPU twin.
"""
import argparse, json, os, platform, statistics, time
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

def kernels(x, h, l, v):
    "name → (ours, pandas (NumPy for corr), vectorbt or None), each a no-argument callable over the same data."
    df, hd, ld, vd = (pd.DataFrame(a) for a in (x, h, l, v))
    tp = (hd + ld + df) / 3
    return {
        "rolling_mean": (lambda: gpu.rolling_mean(x, W), lambda: df.rolling(W).mean(), lambda: vbt.MA.run(df, W).ma),
        "rolling_std": (lambda: gpu.rolling_std(x, W), lambda: df.rolling(W).std(), lambda: vbt.MSTD.run(df, W).mstd),
        "zscore": (lambda: gpu.zscore(x, W), lambda: (df - df.rolling(W).mean()) / df.rolling(W).std(), None),
        "bollinger": (lambda: gpu.bollinger(x, W), lambda: (df.rolling(W).mean(), df.rolling(W).std(ddof=0)),
                      lambda: vbt.BBANDS.run(df, W).upper),
        "ema": (lambda: gpu.ema(x, W), lambda: df.ewm(span=W, adjust=False, min_periods=W).mean(),
                lambda: vbt.MA.run(df, W, ewm=True).ma),
        "rsi": (lambda: gpu.rsi(x, 14), lambda: pandas_rsi(df, 14), lambda: vbt.RSI.run(df, 14, ewm=True).rsi),
        "atr": (lambda: gpu.atr(h, l, x, 14), lambda: pandas_atr(hd, ld, df, 14), lambda: vbt.ATR.run(hd, ld, df, 14, ewm=True).atr),
        "vwap": (lambda: gpu.vwap(h, l, x, v, W), lambda: (tp * vd).rolling(W).sum() / vd.rolling(W).sum(), None),
        "corr": (lambda: gpu.corr(x), lambda: np.corrcoef(x[1:] / x[:-1] - 1, rowvar=False), None),  # NumPy: faster than pandas
    }

def data(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, m)), axis=0))
    return x, x * 1.005, x * 0.995, rng.integers(1, 1000, (n, m)).astype(float)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000x1000,100000x250,1000000x250")
    args = ap.parse_args()
    sizes = [tuple(map(int, s.split("x"))) for s in args.sizes.split(",")]
    card = gpu_info()
    rows, results = [], {}
    for n, m in sizes:
        repeats = 7 if n * m <= 1e6 else 5 if n * m <= 3e7 else 3
        x, h, l, v = data(n, m)
        on_gpu = {}
        if card:
            import cupy
            sync = cupy.cuda.Device().synchronize
            dx, dh, dl, dv = (gpu.to_device(a) for a in (x, h, l, v))
            on_gpu = {k: f for k, (f, _, _) in kernels(dx, dh, dl, dv).items()}
        for name, (ours, theirs, vb) in kernels(x, h, l, v).items():
            t_ours = median_ms(ours, repeats)
            t_pd = median_ms(theirs, repeats)
            t_vbt = median_ms(vb, repeats) if vb else None
            t_gpu = median_ms(on_gpu[name], max(repeats, 10), sync) if card else None
            results[f"{name}_{n}x{m}"] = dict(ours_ms=round(t_ours, 2), peer_ms=round(t_pd, 2),
                                               vectorbt_ms=round(t_vbt, 2) if t_vbt else None,
                                               gpu_ms=round(t_gpu, 3) if t_gpu else None)
            rows.append((f"{n:,} x {m:,}", name, t_ours, t_pd, t_vbt, t_gpu))
            print(f"{n:>9,} x {m:<5,} {name:<13} ours {t_ours:10.1f} ms   {'numpy' if name == 'corr' else 'pandas'} {t_pd:10.1f} ms ({t_pd / t_ours:5.1f}x)   "
                  + (f"vectorbt {t_vbt:10.1f} ms ({t_vbt / t_ours:5.1f}x)" if t_vbt else "vectorbt        n/a          ")
                  + (f"   gpu {t_gpu:8.3f} ms ({t_ours / t_gpu:6.1f}x)" if t_gpu else ""), flush=True)
        del x, h, l, v
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; GPU: {card['name'] if card else 'none'}")
    summary = dict(gpu=card["name"] if card else None, results=results)
    if card:
        wins = {}
        for name in kernels(*data(3, 2)):
            won = [s for s in sizes if results[f"{name}_{s[0]}x{s[1]}"]["gpu_ms"] < results[f"{name}_{s[0]}x{s[1]}"]["ours_ms"]]
            wins[name] = f"{won[0][0]}x{won[0][1]}" if won else None
        summary["gpu_wins_from"] = wins
    ratios = lambda key: [r[key] / r["ours_ms"] for r in results.values() if r[key]]
    summary["median_speedup_vs_pandas"] = round(statistics.median(ratios("peer_ms")), 2)
    summary["median_speedup_vs_vectorbt"] = round(statistics.median(ratios("vectorbt_ms")), 2)
    print(json.dumps(summary))

if __name__ == "__main__":
    main()
