"""Backtests: the fused MA sweep gives vectorbt's statistics exactly (random prices with ties, fees, slippage, both fills);
the vectorbt path carries stops and sizing through; strategies, walk-forward, export and bad input."""
import subprocess, sys
import fastparquet, numpy as np, pandas as pd, pytest
import vectorbt as vbt
from hypothesis import given, settings, strategies as st
from conftest import transitions
from aiplatform.core import ValidationError
from aiplatform.trading.backtest import (STATS, Options, backtest, combinations, crossed_above, custom_strategy, ma_sweep,
                                         portfolio, portfolio_stats, walk_forward, _ma_cross)
from aiplatform.trading.data import gbm_bars, sample_bars

def equal(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    np.testing.assert_allclose(np.where(np.isinf(a), 0, a), np.where(np.isinf(b), 0, b), rtol=1e-9, atol=1e-12)

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(30, 600), decimals=st.sampled_from([0, 1, 4]),
       fees=st.sampled_from([0.0, 0.001, 0.01]), slippage=st.sampled_from([0.0, 0.002]), fill=st.sampled_from(["close", "next_open"]))
def test_fused_sweep_equals_vectorbt(seed, n, decimals, fees, slippage, fill):
    bars = gbm_bars(("X",), n=n, seed=seed, sigma=0.6)["X"]
    bars[["open", "close"]] = bars[["open", "close"]].round(decimals).clip(lower=10 ** -decimals)  # rounding makes MA ties
    c = combinations("ma_cross", dict(fast=[1, 2, 3, 7], slow=[2, 5, 13, 29]))
    opts = Options(fees=fees, slippage=slippage, fill=fill)
    entries, exits = _ma_cross(bars, {k: c[k].to_numpy() for k in c})
    equal(ma_sweep(bars, c.fast, c.slow, opts, device=False), portfolio_stats(portfolio(bars, entries, exits, opts)).to_numpy(float))

def test_orders_under_min_size_are_refused_as_vectorbt_does():
    bars = gbm_bars(("X",), n=2000, seed=11, sigma=0.8)["X"]
    c = combinations("ma_cross", dict(fast=[2, 3, 5], slow=[4, 8, 20]))
    opts = Options(fees=0.01, init_cash=150.0, min_size=1.0)  # once the cash is under one share's price, entries are refused
    entries, exits = _ma_cross(bars, {k: c[k].to_numpy() for k in c})
    ours = ma_sweep(bars, c.fast, c.slow, opts, device=False)
    equal(ours, portfolio_stats(portfolio(bars, entries, exits, opts)).to_numpy(float))
    assert (ours[:, 5] < entries.sum(axis=0)).any()

def test_ma_cross_signals_are_plain_vectorbts():
    close = sample_bars("GOOG").close.round(0)  # whole dollars: many ties between averages
    fast, slow = vbt.MA.run_combs(close, window=np.arange(1, 30), r=2, short_names=["fast", "slow"])
    c = combinations("ma_cross", dict(fast=range(1, 30), slow=range(1, 30)))
    entries, exits = _ma_cross(pd.DataFrame(dict(close=close)), {k: c[k].to_numpy() for k in c})
    np.testing.assert_array_equal(entries, fast.ma_crossed_above(slow).to_numpy())
    np.testing.assert_array_equal(exits, fast.ma_crossed_below(slow).to_numpy())

def test_crossings_are_vectorbts():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 3, (500, 4)).astype(float), rng.integers(0, 3, (500, 4)).astype(float)
    a[rng.random(a.shape) < 0.05] = np.nan
    np.testing.assert_array_equal(crossed_above(a, b), vbt.generic.nb.crossed_above_nb(a, b))

def test_both_engines_give_one_table():
    goog = sample_bars("GOOG")
    grid = dict(fast=[5, 10, 20], slow=[30, 60])
    fused, plain = (backtest(goog, "ma_cross", grid, Options(fill="next_open"), engine=e, progress=False) for e in ("fused", "vectorbt"))
    assert (fused.engine, plain.engine) == ("fused", "vectorbt")
    pd.testing.assert_frame_equal(fused.table[["fast", "slow", "trades"]], plain.table[["fast", "slow", "trades"]])
    equal(fused.table[list(STATS)], plain.table[list(STATS)])

def test_stops_and_sizing_reach_vectorbt():
    eur = sample_bars("EURUSD").iloc[:2000]
    opts = Options(sl_stop=0.002, tp_stop=0.004, size=0.5, size_type="percent", fees=0.0002)
    sw = backtest(eur, "bollinger", dict(window=[20], k=[1.5, 2.0]), opts, progress=False)
    mid = eur.close.rolling(20).mean().to_numpy()
    for i, k in enumerate([1.5, 2.0]):
        upper = mid + k * eur.close.rolling(20).std(ddof=0).to_numpy()
        c = eur.close.to_numpy()
        entries = vbt.generic.nb.crossed_above_nb(c[:, None], upper[:, None])[:, 0]
        exits = vbt.generic.nb.crossed_above_nb(mid[:, None], c[:, None])[:, 0]
        pf = vbt.Portfolio.from_signals(eur.close, entries, exits, sl_stop=0.002, tp_stop=0.004, size=0.5, size_type="percent",
                                        fees=0.0002, init_cash=10_000.0, freq=pd.Timedelta("1h"))
        equal(sw.table.loc[i, list(STATS)].to_numpy(float), portfolio_stats(pf).to_numpy(float)[0])
    assert sw.table.trades.sum() > 10

def test_rsi_strategy_enters_below_lower_and_leaves_above_upper():
    goog = sample_bars("GOOG")
    sw = backtest(goog, "rsi", dict(window=[14], lower=[30], upper=[70]), progress=False)
    t = sw.trades(0)
    from aiplatform.trading.gpu import rsi
    r = pd.Series(rsi(goog.close.to_numpy(), 14), index=goog.index)
    for ts in t.entry: assert r[ts] < 30 and r.shift()[ts] >= 30
    assert len(t) == sw.table.trades[0] > 3

def test_walk_forward_scores_the_in_sample_best_out_of_sample():
    goog = sample_bars("GOOG")
    grid = dict(fast=[5, 10, 20], slow=[50, 100])
    wf = walk_forward(goog, "ma_cross", grid, splits=2, train=0.6, metric="sortino", progress=False)
    half = goog.iloc[:len(goog) // 2]
    cut = int(len(half) * 0.6)
    ins = backtest(half.iloc[:cut], "ma_cross", grid, progress=False).table
    best = ins.loc[ins.sortino.replace(np.inf, np.nan).idxmax()]
    assert (wf.fast[0], wf.slow[0], wf.in_sortino[0]) == (best.fast, best.slow, best.sortino)
    out = backtest(half.iloc[cut:], "ma_cross", dict(fast=[best.fast], slow=[best.slow]), progress=False).table
    assert wf.out_sortino[0] == out.sortino[0] and wf.test_start[0] == half.index[cut]

def test_results_save_to_parquet(tmp_path):
    sw = backtest(sample_bars("GOOG"), "ma_cross", dict(fast=[5, 10], slow=[50]), progress=False)
    sw.save(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(fastparquet.ParquetFile(str(tmp_path / "s.parquet")).to_pandas(), sw.table)

def test_a_dask_cluster_runs_the_sweep_in_pieces_with_the_same_table(tmp_path):
    from distributed import LocalCluster
    from aiplatform.core import load_settings
    goog, grid = sample_bars("GOOG"), dict(fast=range(3, 13), slow=range(20, 60, 5))
    here = {e: backtest(goog, "ma_cross", grid, engine=e, progress=False) for e in ("fused", "vectorbt")}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        s = load_settings(env={}, platform={"data_dir": tmp_path}, jobs={"dask_address": cluster.scheduler_address})
        seen = []
        there = {e: backtest(goog, "ma_cross", grid, chunk=16, engine=e, progress=lambda d, t: seen.append((d, t)), settings=s)
                 for e in ("fused", "vectorbt")}
        pieces = sum(key.startswith("sweep_part-") for key, _, finish in transitions(cluster) if finish == "memory")
    assert pieces == 2 * 5 and seen[-1] == (80, 80) and len(seen) == 10
    for e in here: pd.testing.assert_frame_equal(here[e].table, there[e].table)

def test_a_progress_callback_sees_every_combination():
    seen = []
    backtest(gbm_bars(("X",), n=300)["X"], "ma_cross", dict(fast=range(2, 12), slow=range(12, 40)), chunk=64,
             progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (280, 280) and len(seen) == 5

@pytest.mark.parametrize("call, message", [
    (lambda b: backtest(b, "ma_cross", dict(fast=range(1, 2000), slow=range(1, 2000)), max_combos=10_000), "3,996,001 combinations, the limit is 10,000"),
    (lambda b: backtest(b, "ma_cross", dict(fast=[5]), engine="turbo"), "engine 'turbo'"),
    (lambda b: backtest(b, "rsi", engine="fused"), "engine 'fused': only for ma_cross"),
    (lambda b: backtest(b, "ma_cross", dict(fast=[50], slow=[10])), "no valid combination"),
    (lambda b: backtest(b, custom_strategy(lambda bars, n: (np.ones(3, bool), np.ones(3, bool)), dict(n=[1]))), "signals have 3 rows"),
    (lambda b: backtest(b.assign(close=-b.close)), "column 'close' row 0"),
    (lambda b: Options(sl_stop=0), "sl_stop 0"),
    (lambda b: Options(size=2, size_type="percent"), "a percent size is a fraction up to 1"),
    (lambda b: walk_forward(b, splits=0), "splits 0"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")): call(gbm_bars(("X",), n=200)["X"])

def test_a_new_process_loads_vectorbts_simulator_from_the_disk_cache():
    "vectorbt ships `simulate_from_signals_nb` uncached (4-5 s of compiling per process): the second process compiles nothing."
    script = ("from aiplatform.trading.backtest import Options, _vectorbt, backtest\nfrom aiplatform.trading.data import gbm_bars\n"
              "backtest(gbm_bars(('W',), n=200, seed=2)['W'], 'ma_cross', dict(fast=[2], slow=[9]), Options(), progress=False).figure(0)\n"
              "stats = _vectorbt().portfolio.nb.simulate_from_signals_nb.stats\nprint(len(stats.cache_hits), len(stats.cache_misses))")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split() for _ in range(2)]
    assert runs[1] == ["1", "0"], runs
