"""Indicator kernels: the NumPy twins against pandas; the CUDA source against the twins, run on the CPU by g++
(everywhere) and on a real GPU (wherever one is present)."""
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st
from aiplatform.core import ValidationError, gpu_info
from aiplatform.trading import gpu
from aiplatform.trading.backtest import Options, combinations, ma_sweep
from aiplatform.trading.data import gbm_bars
import cuda_on_cpu

def same(ours, theirs, atol=1e-9): np.testing.assert_allclose(ours, np.asarray(theirs, float), rtol=1e-9, atol=atol)

def prices(seed, n, m):
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, m)), axis=0))

def pandas_rsi(df, w):
    d = df.diff()
    up = d.clip(lower=0).ewm(alpha=1 / w, adjust=False, min_periods=w).mean()
    down = (-d).clip(lower=0).ewm(alpha=1 / w, adjust=False, min_periods=w).mean()
    return 100 - 100 / (1 + up / down)

def pandas_atr(h, l, c, w):
    pc = c.shift()
    tr = pd.concat([h - l, (h - pc).abs(), (l - pc).abs()]).groupby(level=0).max()
    return tr.ewm(alpha=1 / w, adjust=False, min_periods=w).mean()

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 2600), m=st.integers(1, 3), w=st.integers(2, 60))
def test_twins_match_pandas(seed, n, m, w):
    w = min(w, n)
    x = prices(seed, n, m)
    df = pd.DataFrame(x)
    same(gpu.rolling_mean(x, w), df.rolling(w).mean())
    # pandas and ours both update a rolling variance online (add one value, remove one), with different roundings: over
    # thousands of prices near 100 they part by ~2e-9 (1e-7 of a small deviation). Compare at the prices' own scale.
    scale = 1e-10 * np.abs(x).max()
    same(gpu.rolling_std(x, w), df.rolling(w).std(), atol=scale)
    same(gpu.rolling_std(x, w, ddof=0), df.rolling(w).std(ddof=0), atol=scale)
    same(gpu.ema(x, w), df.ewm(span=w, adjust=False, min_periods=w).mean())
    same(gpu.rsi(x, w), pandas_rsi(df, w))
    h, l = x * 1.01, x * 0.99
    same(gpu.atr(h, l, x, w), pd.concat([pandas_atr(pd.Series(h[:, j]), pd.Series(l[:, j]), pd.Series(x[:, j]), w) for j in range(m)], axis=1))
    tp, vol = pd.DataFrame((h + l + x) / 3), pd.DataFrame(np.arange(1, n * m + 1, dtype=float).reshape(n, m))
    same(gpu.vwap(h, l, x, vol.to_numpy(), w), (tp * vol).rolling(w).sum() / vol.rolling(w).sum())
    mid, up, lo = gpu.bollinger(x, w, 1.5)
    same(lo, df.rolling(w).mean() - 1.5 * df.rolling(w).std(ddof=0), atol=scale)

def test_nan_in_a_window_gives_nan_as_pandas():
    x = prices(1, 300, 2)
    x[[10, 150], [0, 1]] = np.nan
    df = pd.DataFrame(x)
    same(gpu.rolling_mean(x, 20), df.rolling(20).mean())
    same(gpu.zscore(x, 20), (df - df.rolling(20).mean()) / df.rolling(20).std())

def test_rsi_of_a_flat_price_is_undefined_and_of_a_rising_one_100():
    assert np.isnan(gpu.rsi(np.full(50, 7.0), 14)[-1])
    assert gpu.rsi(np.arange(1.0, 51.0), 14)[-1] == 100

def test_a_parameter_grid_equals_one_call_per_window():
    x = prices(2, 2500, 3)
    grid = gpu.ema(x, [3, 30, 300])
    for j, w in enumerate([3, 30, 300]): same(grid[:, 3 * j:3 * j + 3], gpu.ema(x, w))

def test_bad_input_is_named():
    x = prices(3, 100, 2)
    with pytest.raises(ValidationError, match="window 101: each must be between 1 and the 100 bars"): gpu.rolling_mean(x, 101)
    with pytest.raises(ValidationError, match="window 1: each must be between 2"): gpu.rsi(x, 1)
    with pytest.raises(ValidationError, match="expected a non-empty 1-D or 2-D array"): gpu.ema(np.zeros((2, 2, 2)), 2)
    with pytest.raises(ValidationError, match="volume: shape"): gpu.vwap(x, x, x, x[:50], 5)
    with pytest.raises(ValidationError, match="at least 3 bars"): gpu.corr(x[:2])

def _all_indicators(x, vol):
    "Every kernel over a grid of windows that crosses block boundaries."
    h, l = x * 1.01, x * 0.99
    ws = [2, 17, 300]
    return dict(mean=gpu.rolling_mean(x, ws), std=gpu.rolling_std(x, ws), z=gpu.zscore(x, ws, ddof=0),
                bb=np.hstack(gpu.bollinger(x, ws, 2.0)), vwap=gpu.vwap(h, l, x, vol, ws), ema=gpu.ema(x, ws),
                rsi=gpu.rsi(x, ws), atr=gpu.atr(h, l, x, ws), corr=gpu.corr(x))

@pytest.fixture
def cuda_on_the_cpu(monkeypatch):
    "The trading.gpu device path with the CUDA source compiled for the CPU and NumPy arrays standing in for CuPy's."
    if not cuda_on_cpu.have_compiler(): pytest.skip("g++ is not installed")
    def patch():
        monkeypatch.setattr(gpu, "kernel", cuda_on_cpu.CpuKernel)
        monkeypatch.setattr(gpu, "is_device", lambda a: True)
        monkeypatch.setattr(gpu, "device_xp", lambda: np)
    return patch

def test_cuda_kernels_equal_the_twins(cuda_on_the_cpu):
    x = prices(4, 2 * gpu.BLOCK + 300, 3)
    x[500, 1] = np.nan
    vol = np.random.default_rng(5).integers(0, 1000, x.shape).astype(float)
    twins = _all_indicators(x, vol)
    cuda_on_the_cpu()
    for name, got in _all_indicators(x, vol).items(): np.testing.assert_allclose(got, twins[name], rtol=1e-9, atol=1e-9, err_msg=name)

def test_cuda_sweep_equals_the_compiled_sweep(cuda_on_the_cpu):
    bars = gbm_bars(("X",), n=3000, seed=6)["X"]
    bars["close"] = bars["close"].round(0)  # plateaus make moving-average ties, the tricky case
    bars["open"] = bars["open"].round(0)
    c = combinations("ma_cross", dict(fast=[2, 3, 5, 8], slow=[4, 10, 30, 90]))
    options = (Options(), Options(fees=0.003, slippage=0.002, fill="next_open"))
    twins = [ma_sweep(bars, c.fast, c.slow, opts, device=False) for opts in options]
    cuda_on_the_cpu()
    for opts, twin in zip(options, twins): np.testing.assert_allclose(ma_sweep(bars, c.fast, c.slow, opts, device=True), twin, rtol=1e-12)

@pytest.mark.gpu
@pytest.mark.skipif(gpu_info() is None, reason="no GPU")
def test_gpu_equals_the_twins():
    x = prices(7, 5000, 40)
    vol = np.random.default_rng(8).integers(0, 1000, x.shape).astype(float)
    twins = _all_indicators(x, vol)
    got = _all_indicators(gpu.to_device(x), gpu.to_device(vol))
    for name, arr in got.items(): np.testing.assert_allclose(gpu.to_host(arr), twins[name], rtol=1e-9, atol=1e-9, err_msg=name)
    bars = gbm_bars(("X",), n=20_000, seed=9)["X"]
    c = combinations("ma_cross", dict(fast=range(2, 30), slow=range(2, 60)))
    np.testing.assert_allclose(ma_sweep(bars, c.fast, c.slow, device=True), ma_sweep(bars, c.fast, c.slow, device=False), rtol=1e-9)
