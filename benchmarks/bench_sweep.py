"""The dual moving-average crossover sweep of vectorbt's README, end to end: ours against plain vectorbt usage.

Every pair of windows 2..100 (4,851 combinations) over synthetic daily prices, fees 0.1%, all-in orders at the
close, and the statistics total return, Sharpe, Sortino, maximum drawdown, win rate and trade count. Plain vectorbt
is `vbt.MA.run_combs` → `ma_crossed_above/below` → `Portfolio.from_signals`, exactly as its README does. Each
measurement runs in its own process, so peak memory (max RSS) is that run's alone; compile caches are warmed by a
small run first; ours is the median of 5 runs (3 at a million bars), vectorbt's a single run. The statistics of both are compared for every combination. When the README's code runs out of
memory (vectorbt 1.2 at 50,000 bars in 24 GB), the same vectorbt calls run on a twentieth of the combinations at
a time and their times are added up.

Run: `.venv/bin/python benchmarks/bench_sweep.py` (about 10 minutes here; `--vectorbt-10k-only` skips 50,000 bars
for vectorbt). Prints a table, then one JSON line with `speedup_vs_vectorbt_50k`, `peak_gb_50k`, `seconds_1m` and
`stats_match_vectorbt`. `--quick` (run by `make test`): the same runs with windows 2..20 (171 combinations) at
2,000 bars against vectorbt and 20,000 bars alone, under half a minute; its JSON keys name those sizes (`_2k`, `_20k`).
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd

WINDOWS = range(2, 101)

def prices(n):
    from aiplatform.trading.data import gbm_bars
    return gbm_bars(("X",), n=n, freq="1D" if n <= 100_000 else "1min", seed=42)["X"]  # a million days overflow pandas' dates

def run_ours(n, windows=WINDOWS, device=False):
    from aiplatform.trading.backtest import Options, backtest, ma_sweep
    bars = prices(n)
    opts = Options(fees=0.001, init_cash=100.0)
    backtest(bars.iloc[:500], "ma_cross", dict(fast=[2, 3], slow=[5, 6]), opts, progress=False)  # warm compile caches
    if device: ma_sweep(bars.iloc[:500], [2], [5], opts, device=True)
    from aiplatform.trading.backtest import combinations
    c = combinations("ma_cross", dict(fast=windows, slow=windows))
    times = []
    for _ in range(5 if n <= 100_000 else 3):  # the median of a few runs
        t = time.perf_counter()
        if device: stats = ma_sweep(bars, c.fast, c.slow, opts, device=True)
        else: stats = backtest(bars, "ma_cross", dict(fast=windows, slow=windows), opts, progress=False).table.iloc[:, 2:].to_numpy(float)
        times.append(time.perf_counter() - t)
    return statistics.median(times), stats

def vectorbt_stats(pf):
    return np.column_stack([np.asarray(v, float) for v in (pf.total_return(), pf.sharpe_ratio(), pf.sortino_ratio(),
                            pf.max_drawdown(), pf.trades.win_rate(), pf.trades.count())])

def run_vectorbt(n, windows=WINDOWS, chunks=1):
    "vectorbt's README: `chunks=1` exactly; more splits the combinations (same calls on column subsets) to fit memory."
    import vectorbt as vbt
    def readme(price, windows):
        fast_ma, slow_ma = vbt.MA.run_combs(price, window=windows, r=2, short_names=["fast", "slow"])
        entries, exits = fast_ma.ma_crossed_above(slow_ma), fast_ma.ma_crossed_below(slow_ma)
        return vectorbt_stats(vbt.Portfolio.from_signals(price, entries, exits, size=np.inf, fees=0.001, freq="1D"))
    def chunked(price, windows):
        ma = vbt.MA.run(price, window=windows).ma.to_numpy()  # one column per window
        pairs = np.array([(f, s) for i, f in enumerate(windows) for s in windows[i + 1:]]) - windows[0]
        parts = []
        for part in np.array_split(pairs, chunks):
            fast, slow = ma[:, part[:, 0]], ma[:, part[:, 1]]
            entries = pd.DataFrame(vbt.generic.nb.crossed_above_nb(fast, slow), index=price.index)
            exits = pd.DataFrame(vbt.generic.nb.crossed_above_nb(slow, fast), index=price.index)
            parts.append(vectorbt_stats(vbt.Portfolio.from_signals(price, entries, exits, size=np.inf, fees=0.001, freq="1D")))
        return np.vstack(parts)
    run = readme if chunks == 1 else chunked
    price = prices(n)["close"]
    run(price.iloc[:150], np.arange(2, 6))  # warm compile caches
    t = time.perf_counter()
    stats = run(price, np.arange(windows.start, windows.stop))
    return time.perf_counter() - t, stats

def child(kind, n, out, chunks, windows=WINDOWS):
    "One measurement, in this process: writes the statistics to `out`, prints seconds and peak GB."
    seconds, stats = {"ours": lambda n: run_ours(n, windows), "gpu": lambda n: run_ours(n, windows, device=True),
                      "vectorbt": lambda n: run_vectorbt(n, windows, chunks)}[kind](n)
    np.save(out, stats)
    print(json.dumps(dict(seconds=seconds, peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)))

def measure(kind, n, folder, chunks=1, may_fail=False, windows=WINDOWS):
    "Run one measurement in a child process; `None` if it may fail and did (killed for memory, say)."
    out = Path(folder) / f"{kind}-{n}-{chunks}.npy"
    r = subprocess.run([sys.executable, __file__, "--child", kind, "--bars", str(n), "--out", str(out), "--chunks", str(chunks),
                        "--max-window", str(windows.stop - 1)], capture_output=True, text=True)
    if r.returncode != 0:
        if may_fail: return None
        raise SystemExit(f"{kind} at {n:,} bars failed (exit status {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]) | dict(stats=np.load(out))

def same(a, b) -> tuple[bool, int]:
    "Whether two statistics tables agree (rtol 1e-9, NaN and inf equal), and how many combinations differ."
    close = np.isclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True) | ((a == b) & np.isinf(a))
    return bool(close.all()), int((~close.all(axis=1)).sum())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child"); ap.add_argument("--bars", type=int); ap.add_argument("--out"); ap.add_argument("--chunks", type=int, default=1)
    ap.add_argument("--max-window", type=int, default=WINDOWS.stop - 1, help=argparse.SUPPRESS)
    ap.add_argument("--vectorbt-10k-only", action="store_true", help="vectorbt at 10,000 bars only")
    ap.add_argument("--quick", action="store_true", help="windows 2..20, 2,000 bars against vectorbt, 20,000 alone (seconds)")
    args = ap.parse_args()
    if args.child: return child(args.child, args.bars, args.out, args.chunks, range(2, args.max_window + 1))
    from aiplatform.core import gpu_info
    card = gpu_info()
    sizes, big_n, windows = ((2_000,), 20_000, range(2, 21)) if args.quick else ((10_000, 50_000), 1_000_000, WINDOWS)
    combos = len(windows) * (len(windows) - 1) // 2
    rows, figures, matches, unchunked_failed = [], {}, [], {}
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            ours = measure("ours", n, folder, windows=windows)
            rows.append((f"ours, {n:,} bars", ours))
            if n == 50_000 and args.vectorbt_10k_only: continue
            theirs = measure("vectorbt", n, folder, may_fail=True, windows=windows)
            if theirs is None:  # the README as written did not fit in memory: the same calls on a twentieth of the columns at a time
                unchunked_failed[n] = True
                print(f"plain vectorbt at {n:,} bars was killed (out of memory); running it in 20 column chunks", flush=True)
                theirs = measure("vectorbt", n, folder, chunks=20, windows=windows)
            rows.append((f"plain vectorbt, {n:,} bars" + (" (20 chunks)" if n in unchunked_failed else ""), theirs))
            ok, differ = same(ours["stats"], theirs["stats"])
            matches.append(ok)
            figures[n] = dict(speedup=theirs["seconds"] / ours["seconds"], differ=differ)
            print(f"{n:,} bars: ours {ours['seconds']:.2f} s, {ours['peak_gb']:.2f} GB; vectorbt {theirs['seconds']:.2f} s, "
                  f"{theirs['peak_gb']:.2f} GB; {figures[n]['speedup']:.1f}x faster; statistics differ in {differ} of {combos}", flush=True)
        big = measure("ours", big_n, folder, windows=windows)
        rows.append((f"ours, {big_n:,} bars", big))
        if card:
            on_gpu = measure("gpu", big_n, folder, windows=windows)
            rows.append((f"ours on {card['name']}, {big_n:,} bars", on_gpu))
            gpu_ok, _ = same(on_gpu["stats"], big["stats"])
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"GPU: {card['name'] if card else 'none'}")
    print(f"{'run':<44} {'seconds':>9} {'combinations/s':>15} {'peak GB':>8}")
    for name, r in rows: print(f"{name:<44} {r['seconds']:9.2f} {combos / r['seconds']:15,.0f} {r['peak_gb']:8.2f}")
    last = next(r for name, r in rows if name == f"ours, {sizes[-1]:,} bars")
    result = {f"speedup_vs_vectorbt_{size(n)}": round(figures[n]["speedup"], 1) if n in figures else None for n in sizes}
    result |= {f"peak_gb_{size(sizes[-1])}": round(last["peak_gb"], 3), f"seconds_{size(big_n)}": round(big["seconds"], 2),
               f"combos_per_s_{size(big_n)}": round(combos / big["seconds"]), "stats_match_vectorbt": all(matches),
               "vectorbt_unchunked_out_of_memory_at": sorted(unchunked_failed)}
    if card: result.update({f"gpu_seconds_{size(big_n)}": round(on_gpu["seconds"], 3), "gpu_stats_match_cpu": gpu_ok})
    if args.quick: result["quick"] = True
    print(json.dumps(result))

def size(n): return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"

if __name__ == "__main__":
    main()
