"""GPU check: every CUDA kernel against its NumPy twin, then timed against the card's memory-bandwidth floor.

Run on a machine with a CUDA GPU and CuPy, from the source tree: `PYTHONPATH=. python benchmarks/gpu_check.py`
(needs only NumPy, pandas, Numba and CuPy). In one run it
1. checks every kernel's result on the GPU against the Numba twin on the CPU (float64, rtol 1e-9), windows that
   cross block boundaries included, and the fused MA sweep's statistics on the GPU against the CPU's;
2. measures the card's device-to-device copy bandwidth, and for each memory-bound kernel on 1,000,000 × 250 float64
   its median time against the floor (bytes read plus written over that bandwidth), beside a naive CuPy rolling
   mean (a `cumsum` difference) and `cupy.corrcoef`;
3. times the full 4,851-combination MA crossover sweep over 1,000,000 bars.
Prints a Markdown table for benchmarks/RESULTS.md, then one JSON line. Exit status 1 if any check fails.
"""
import json, os, platform, statistics, sys, time
import numpy as np
import pandas as pd
from aiplatform.core import gpu_info
from aiplatform.trading import gpu
from aiplatform.trading.backtest import Options, combinations, ma_sweep

N, M, W = 1_000_000, 250, 20
TARGET_MS = dict(rolling_mean=3, rolling_std=3, ema=5, corr=3)

def gpu_ms(fn, repeats=20):
    "Median milliseconds of `fn()` on the device (CUDA events), after a warm-up call."
    import cupy as cp
    fn(); cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record(); fn(); stop.record(); stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)

def copy_bandwidth() -> float:
    "Device-to-device copy bandwidth in bytes/s (bytes read plus written)."
    import cupy as cp
    a = cp.ones(2**28)  # 2 GiB
    b = cp.empty_like(a)
    ms = gpu_ms(lambda: cp.copyto(b, a))
    return 2 * a.nbytes / (ms / 1e3)

def kernels(x, h, l, v):
    "name → (call, arrays read, arrays written) for the memory floor."
    return {
        "rolling_mean": (lambda: gpu.rolling_mean(x, W), 1, 1),
        "rolling_std": (lambda: gpu.rolling_std(x, W), 1, 1),
        "zscore": (lambda: gpu.zscore(x, W), 1, 1),
        "bollinger": (lambda: gpu.bollinger(x, W), 1, 3),
        "ema": (lambda: gpu.ema(x, W), 1, 1),
        "rsi": (lambda: gpu.rsi(x, 14), 1, 1),
        "atr": (lambda: gpu.atr(h, l, x, 14), 3, 1),
        "vwap": (lambda: gpu.vwap(h, l, x, v, W), 4, 1),
    }

def data(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, m)), axis=0))
    x[n // 3, 0] = np.nan  # NaN handling is part of the contract
    return x, x * 1.005, x * 0.995, rng.integers(1, 1000, (n, m)).astype(float)

def check_equal(report) -> bool:
    "Every kernel on the GPU equals its twin on the CPU, windows crossing blocks included."
    ok = True
    x, h, l, v = data(3 * gpu.BLOCK + 77, 70)
    dev = [gpu.to_device(a) for a in (x, h, l, v)]
    ws = [2, 14, 300]
    pairs = dict(rolling_mean=lambda x, h, l, v: gpu.rolling_mean(x, ws), rolling_std=lambda x, h, l, v: gpu.rolling_std(x, ws),
                 zscore=lambda x, h, l, v: gpu.zscore(x, ws), bollinger=lambda x, h, l, v: gpu.bollinger(x, ws, 2.0),
                 ema=lambda x, h, l, v: gpu.ema(x, ws), rsi=lambda x, h, l, v: gpu.rsi(x, ws),
                 atr=lambda x, h, l, v: gpu.atr(h, l, x, ws), vwap=lambda x, h, l, v: gpu.vwap(h, l, x, v, ws),
                 corr=lambda x, h, l, v: gpu.corr(x[:, 1:]))
    for name, fn in pairs.items():
        cpu, dv = fn(x, h, l, v), fn(*dev)
        cpu, dv = (cpu, dv) if isinstance(cpu, tuple) else ((cpu,), (dv,))
        same = all(np.allclose(gpu.to_host(d), c, rtol=1e-9, atol=1e-9, equal_nan=True) for c, d in zip(cpu, dv))
        report.append((f"equal to the twin: {name}", "yes" if same else "NO"))
        ok &= same
    return ok

def time_kernels(bw, report, figures):
    "Each memory-bound kernel on 1,000,000 × 250 against its floor, the naive rolling mean, and the correlation."
    import cupy as cp
    x, h, l, v = (cp.asarray(a) for a in data(N, M))
    for name, (fn, reads, writes) in kernels(x, h, l, v).items():
        ms = gpu_ms(fn)
        floor = (reads + writes) * x.nbytes / bw * 1e3
        figures[f"{name}_ms"], figures[f"{name}_x_floor"] = round(ms, 3), round(ms / floor, 2)
        target = f", target ≤ {TARGET_MS[name]} ms" if name in TARGET_MS else ""
        report.append((f"{name} 1,000,000 × 250", f"{ms:.3f} ms = {ms / floor:.2f}× the {floor:.3f} ms floor{target}"))
    naive = gpu_ms(lambda: (lambda c: (c[W:] - c[:-W]) / W)(cp.cumsum(x, axis=0)))
    report.append(("naive CuPy rolling mean (cumsum) 1,000,000 × 250", f"{naive:.3f} ms"))
    big = cp.asarray(100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, (10_000, 2_000)), axis=0)))
    corr_ms = gpu_ms(lambda: gpu.corr(big))
    ref_ms = gpu_ms(lambda: cp.corrcoef((big[1:] / big[:-1] - 1).T))
    figures.update(corr_ms=round(corr_ms, 3), cupy_corrcoef_ms=round(ref_ms, 3))
    report.append(("corr 2,000 assets × 10,000 bars", f"{corr_ms:.3f} ms (cupy.corrcoef {ref_ms:.3f} ms), target ≤ 3 ms"))

def main():
    card = gpu_info()
    if card is None: sys.exit("gpu_check: no usable CUDA GPU (CuPy found none); run it on a GPU machine")
    report, figures = [], dict(gpu=card["name"])
    ok = check_equal(report)
    bw = copy_bandwidth()
    figures["copy_tb_s"] = round(bw / 1e12, 3)
    report.append(("device-to-device copy bandwidth", f"{bw / 1e12:.2f} TB/s"))
    time_kernels(bw, report, figures)
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, N)))
    bars = pd.DataFrame(dict(open=np.r_[100.0, close[:-1]], close=close), index=pd.date_range("2020", periods=N, freq="1min"))
    c = combinations("ma_cross", dict(fast=range(2, 101), slow=range(2, 101)))
    opts = Options(fees=0.001)
    ma_sweep(bars.iloc[:1000], c.fast[:8], c.slow[:8], opts, device=True)
    t = time.perf_counter(); on_gpu = ma_sweep(bars, c.fast, c.slow, opts, device=True); sweep_s = time.perf_counter() - t
    t = time.perf_counter(); on_cpu = ma_sweep(bars, c.fast, c.slow, opts, device=False); cpu_s = time.perf_counter() - t
    same = bool((np.isclose(on_gpu, on_cpu, rtol=1e-9, atol=1e-12, equal_nan=True) | (on_gpu == on_cpu)).all())
    ok &= same
    figures.update(sweep_1m_gpu_s=round(sweep_s, 3), sweep_1m_cpu_s=round(cpu_s, 2), sweep_equal=same)
    report.append(("MA sweep, 4,851 combinations × 1,000,000 bars",
                   f"{sweep_s:.3f} s on the GPU (target < 2 s); {cpu_s:.2f} s on {os.cpu_count()} CPU cores; equal: {'yes' if same else 'NO'}"))
    print(f"GPU: {card['name']} ({card['memory_gb']} GiB), CuPy {card['cupy']}; host {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| check | result |\n|---|---|")
    for k, val in report: print(f"| {k} | {val} |")
    figures["all_equal"] = ok
    print(json.dumps(figures))
    sys.exit(0 if ok else 1)

if __name__ == "__main__":
    main()
