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

`--quick` (run by `make test`): with a GPU, the same three steps on 20,000 × 50 arrays, a 128 MiB copy and a 20,000-bar
sweep of windows 2..20. Without one, the checks of step 1 and of the sweep alone, on small arrays, with the CUDA source
compiled for the CPU by g++ (tests/cuda_on_cpu.py, as the tests do): the kernels' logic is checked, nothing is
timed, and the output says so; without g++ either it says "no GPU: skipped" and exits 0.
"""
import argparse, json, os, platform, statistics, sys, time
from contextlib import contextmanager, nullcontext
from pathlib import Path
import numpy as np
import pandas as pd
from aiplatform.core import gpu_info
from aiplatform.trading import gpu
from aiplatform.trading.backtest import Options, combinations, ma_sweep

N, M, W = 1_000_000, 250, 20
TARGET_MS = dict(rolling_mean=3, rolling_std=3, ema=5, corr=3)
REPO = Path(__file__).resolve().parents[1]
FULL = dict(n=N, m=M, copy=2**28, corr=(10_000, 2_000), sweep_bars=N, windows=range(2, 101), repeats=20, check_cols=70)
QUICK = dict(n=20_000, m=50, copy=2**24, corr=(2_000, 200), sweep_bars=20_000, windows=range(2, 21), repeats=5, check_cols=70)
CPU_SHIM = dict(check_cols=3)  # without a GPU: the check only, small enough for one C call per thread

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

def copy_bandwidth(size=2**28, repeats=20) -> float:
    "Device-to-device copy bandwidth in bytes/s (bytes read plus written)."
    import cupy as cp
    a = cp.ones(size)  # 2 GiB at 2**28
    b = cp.empty_like(a)
    ms = gpu_ms(lambda: cp.copyto(b, a), repeats)
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

@contextmanager
def cuda_on_the_cpu():
    "The device path of trading.gpu with the CUDA source compiled for the CPU by g++ and NumPy arrays for CuPy's."
    sys.path.insert(0, str(REPO / "tests"))
    import cuda_on_cpu
    saved = gpu.kernel, gpu.is_device, gpu.device_xp
    gpu.kernel, gpu.is_device, gpu.device_xp = cuda_on_cpu.CpuKernel, lambda a: True, lambda: np
    try: yield
    finally: gpu.kernel, gpu.is_device, gpu.device_xp = saved

def check_equal(report, cols=70, device=nullcontext) -> bool:
    "Every kernel on the GPU (inside `device()`) equals its twin on the CPU, windows crossing blocks included."
    ok = True
    x, h, l, v = data(3 * gpu.BLOCK + 77, cols)
    ws = [2, 14, 300]
    pairs = dict(rolling_mean=lambda x, h, l, v: gpu.rolling_mean(x, ws), rolling_std=lambda x, h, l, v: gpu.rolling_std(x, ws),
                 zscore=lambda x, h, l, v: gpu.zscore(x, ws), bollinger=lambda x, h, l, v: gpu.bollinger(x, ws, 2.0),
                 ema=lambda x, h, l, v: gpu.ema(x, ws), rsi=lambda x, h, l, v: gpu.rsi(x, ws),
                 atr=lambda x, h, l, v: gpu.atr(h, l, x, ws), vwap=lambda x, h, l, v: gpu.vwap(h, l, x, v, ws),
                 corr=lambda x, h, l, v: gpu.corr(x[:, 1:]))
    twins = {name: fn(x, h, l, v) for name, fn in pairs.items()}
    with device():
        dev = [gpu.to_device(a) for a in (x, h, l, v)]
        for name, fn in pairs.items():
            cpu, dv = twins[name], fn(*dev)
            cpu, dv = (cpu, dv) if isinstance(cpu, tuple) else ((cpu,), (dv,))
            same = all(np.allclose(gpu.to_host(d), c, rtol=1e-9, atol=1e-9, equal_nan=True) for c, d in zip(cpu, dv))
            report.append((f"equal to the twin: {name}", "yes" if same else "NO"))
            ok &= same
    return ok

def check_sweep(bars, windows, device=nullcontext):
    "The fused MA sweep on the device (inside `device()`) and on the CPU: statistics, seconds each, and whether they are equal."
    c = combinations("ma_cross", dict(fast=windows, slow=windows))
    opts = Options(fees=0.001)
    with device():
        ma_sweep(bars.iloc[:1000], c.fast[:8], c.slow[:8], opts, device=True)
        t = time.perf_counter(); on_gpu = ma_sweep(bars, c.fast, c.slow, opts, device=True); sweep_s = time.perf_counter() - t
    t = time.perf_counter(); on_cpu = ma_sweep(bars, c.fast, c.slow, opts, device=False); cpu_s = time.perf_counter() - t
    same = bool((np.isclose(on_gpu, on_cpu, rtol=1e-9, atol=1e-12, equal_nan=True) | (on_gpu == on_cpu)).all())
    return len(c.fast), sweep_s, cpu_s, same

def minute_bars(n, seed=2):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    return pd.DataFrame(dict(open=np.r_[100.0, close[:-1]], close=close), index=pd.date_range("2020", periods=n, freq="1min"))

def table(report):
    print("| check | result |\n|---|---|")
    for k, val in report: print(f"| {k} | {val} |")

def without_gpu():
    "--quick without a GPU: the kernels' logic through the CPU shim (g++), no timings; or a one-line skip without g++."
    sys.path.insert(0, str(REPO / "tests"))
    import cuda_on_cpu
    if not cuda_on_cpu.have_compiler():
        print("gpu_check --quick: no GPU: skipped (and no g++ to run the CUDA kernels on the CPU)")
        sys.exit(0)
    print(f"no GPU: the CUDA kernels compiled for the CPU by g++ (tests/cuda_on_cpu.py) against their twins; nothing timed; "
          f"host {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    report = []
    ok = check_equal(report, CPU_SHIM["check_cols"], cuda_on_the_cpu)
    combos, _, _, same = check_sweep(minute_bars(3000), range(2, 12), cuda_on_the_cpu)
    ok &= same
    report.append((f"MA sweep, {combos} combinations × 3,000 bars, CUDA source on the CPU", f"equal: {'yes' if same else 'NO'}"))
    report.append(("timings against the bandwidth floor, naive CuPy and cupy.corrcoef", "skipped: no GPU"))
    table(report)
    print(json.dumps(dict(gpu=None, cuda_on_cpu=True, sweep_equal=same, all_equal=ok, quick=True)))
    sys.exit(0 if ok else 1)

def time_kernels(bw, report, figures, z=FULL):
    "Each memory-bound kernel on 1,000,000 × 250 against its floor, the naive rolling mean, and the correlation."
    import cupy as cp
    n, m, repeats = z["n"], z["m"], z["repeats"]
    x, h, l, v = (cp.asarray(a) for a in data(n, m))
    for name, (fn, reads, writes) in kernels(x, h, l, v).items():
        ms = gpu_ms(fn, repeats)
        floor = (reads + writes) * x.nbytes / bw * 1e3
        figures[f"{name}_ms"], figures[f"{name}_x_floor"] = round(ms, 3), round(ms / floor, 2)
        target = f", target ≤ {TARGET_MS[name]} ms" if name in TARGET_MS and z is FULL else ""
        report.append((f"{name} {n:,} × {m:,}", f"{ms:.3f} ms = {ms / floor:.2f}× the {floor:.3f} ms floor{target}"))
    naive = gpu_ms(lambda: (lambda c: (c[W:] - c[:-W]) / W)(cp.cumsum(x, axis=0)), repeats)
    report.append((f"naive CuPy rolling mean (cumsum) {n:,} × {m:,}", f"{naive:.3f} ms = {naive / figures['rolling_mean_ms']:.1f}× ours"))
    figures.update(rolling_mean_vs_naive_cupy=round(naive / figures["rolling_mean_ms"], 2))
    bars, assets = z["corr"]
    big = cp.asarray(100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, (bars, assets)), axis=0)))
    corr_ms = gpu_ms(lambda: gpu.corr(big), repeats)
    ref_ms = gpu_ms(lambda: cp.corrcoef((big[1:] / big[:-1] - 1).T), repeats)
    figures.update(corr_ms=round(corr_ms, 3), cupy_corrcoef_ms=round(ref_ms, 3), corr_vs_cupy_corrcoef=round(ref_ms / corr_ms, 2))
    target = ", target ≤ 3 ms" if z is FULL else ""
    report.append((f"corr {assets:,} assets × {bars:,} bars", f"{corr_ms:.3f} ms (cupy.corrcoef {ref_ms:.3f} ms = {ref_ms / corr_ms:.1f}×){target}"))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes; without a GPU, the kernels' logic through the CPU shim")
    quick = ap.parse_args().quick
    z = QUICK if quick else FULL
    card = gpu_info()
    if card is None:
        if quick: without_gpu()
        sys.exit("gpu_check: no usable CUDA GPU (CuPy found none); run it on a GPU machine")
    report, figures = [], dict(gpu=card["name"])
    ok = check_equal(report, z["check_cols"])
    bw = copy_bandwidth(z["copy"], z["repeats"])
    figures["copy_tb_s"] = round(bw / 1e12, 3)
    report.append(("device-to-device copy bandwidth", f"{bw / 1e12:.2f} TB/s"))
    time_kernels(bw, report, figures, z)
    n = z["sweep_bars"]
    combos, sweep_s, cpu_s, same = check_sweep(minute_bars(n), z["windows"])
    ok &= same
    label = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"
    figures.update({f"sweep_{label}_gpu_s": round(sweep_s, 3), f"sweep_{label}_cpu_s": round(cpu_s, 2), "sweep_equal": same})
    target = " (target < 2 s)" if z is FULL else ""
    report.append((f"MA sweep, {combos:,} combinations × {n:,} bars",
                   f"{sweep_s:.3f} s on the GPU{target}; {cpu_s:.2f} s on {os.cpu_count()} CPU cores = {cpu_s / sweep_s:.1f}×; "
                   f"equal: {'yes' if same else 'NO'}"))
    print(f"GPU: {card['name']} ({card['memory_gb']} GiB), CuPy {card['cupy']}; host {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}\n")
    table(report)
    figures["all_equal"] = ok
    if quick: figures["quick"] = True
    print(json.dumps(figures))
    sys.exit(0 if ok else 1)

if __name__ == "__main__":
    main()
