"""Market data: appends in any split read back whole and by range, bad files name file, column and row, resampling,
imports with a mapping, and the synthetic generators."""
import pandas as pd, pytest
from hypothesis import given, settings, strategies as st
from aiplatform.core import NotFound, ValidationError
from aiplatform.trading.data import MarketStore, gbm_bars, order_flow, read_table, resample, sample_bars, validate

@settings(max_examples=30, deadline=None)
@given(freq=st.sampled_from(["1D", "1h", "7min"]), n=st.integers(1, 400), cuts=st.lists(st.integers(1, 399), max_size=4),
       lo=st.integers(0, 399), span=st.integers(0, 400))
def test_appends_read_back_whole_and_by_range(tmp_path_factory, freq, n, cuts, lo, span):
    bars = gbm_bars(("X",), n=max(n, 2), freq=freq, seed=n)["X"].iloc[:n]
    store = MarketStore(tmp_path_factory.mktemp("m"))
    edges = sorted({0, n, *(c for c in cuts if c < n)})
    for a, b in zip(edges, edges[1:]): store.write("X", bars.iloc[a:b])
    pd.testing.assert_frame_equal(store.read("X"), bars, check_freq=False)
    start = bars.index[min(lo, n - 1)]
    end = start + span * pd.Timedelta(freq)
    want = bars[(bars.index >= start) & (bars.index < end)]
    pd.testing.assert_frame_equal(store.read("X", start=start, end=end), want, check_freq=False)
    assert store.meta("bars", "X")["rows"] == n

def test_kinds_are_kept_apart(tmp_path):
    store = MarketStore(tmp_path)
    t = pd.DataFrame(dict(ts=pd.date_range("2024-01-02 09:00", periods=5, freq="s"), price=[1.0, 2, 3, 4, 5], qty=[1.0] * 5))
    store.write("X", t, kind="trades")
    assert store.symbols("trades") == ["X"] and store.symbols("bars") == []
    with pytest.raises(NotFound, match="bars 'X': not in the store"): store.read("X")
    assert store.read("X", kind="trades").price.tolist() == [1, 2, 3, 4, 5]

@pytest.mark.parametrize("body, message", [
    ("ts,open,high,low,close\n2024-01-01,1,2,1,1\n", "bad.csv: missing column(s) volume"),
    ("ts,open,high,low,close,volume\n2024-01-01,1,2,1,1,5\n2024-01-01,1,2,1,1,5\n", "bad.csv: column 'ts' row 1: duplicate timestamp"),
    ("ts,open,high,low,close,volume\n2024-01-02,1,2,1,1,5\n2024-01-01,1,2,1,1,5\n", "bad.csv: column 'ts' row 1: unsorted"),
    ("ts,open,high,low,close,volume\n2024-01-01,1,2,1,1,5\n2024-01-02,1,2,1,-1,5\n", "bad.csv: column 'close' row 1: -1.0 is not positive"),
    ("ts,open,high,low,close,volume\n2024-01-01,1,2,1,1,-5\n", "bad.csv: column 'volume' row 0: -5.0 is negative"),
    ("ts,open,high,low,close,volume\n2024-01-01,1,2,1,x,5\n", "bad.csv: column 'close' row 0: not a finite number ('x')"),
    ("ts,open,high,low,close,volume\nyesterday,1,2,1,1,5\n", "bad.csv: column 'ts': not timestamps"),
    ("ts,open,high,low,close,volume\n", "bad.csv: no rows"),
])
def test_bad_files_name_file_column_and_row(tmp_path, body, message):
    (tmp_path / "bad.csv").write_text(body)
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")): read_table(tmp_path / "bad.csv")

def test_a_refused_append_keeps_what_was_stored(tmp_path):
    store = MarketStore(tmp_path)
    bars = sample_bars("GOOG")
    store.write("GOOG", bars.iloc[:100])
    bad = bars.iloc[100:200].copy()
    bad.iloc[50, bad.columns.get_loc("volume")] = -1
    with pytest.raises(ValidationError, match="column 'volume' row 50"): store.write("GOOG", bad)
    with pytest.raises(ValidationError, match="not after the stored data"): store.write("GOOG", bars.iloc[50:150])
    pd.testing.assert_frame_equal(store.read("GOOG"), bars.iloc[:100], check_freq=False)

def test_parquet_import_with_a_mapping(tmp_path):
    import fastparquet
    src = sample_bars("EURUSD").iloc[:50].reset_index().rename(columns=dict(ts="when", close="last"))
    fastparquet.write(str(tmp_path / "fx.parquet"), src)
    got = read_table(tmp_path / "fx.parquet", mapping=dict(ts="when", close="last"))
    pd.testing.assert_frame_equal(got, sample_bars("EURUSD").iloc[:50], check_freq=False)

def test_resampling_bars_matches_a_direct_computation():
    eur = sample_bars("EURUSD").iloc[:500]
    daily = resample(eur, "1D")
    for day, got in daily.iterrows():
        rows = eur[eur.index.normalize() == day]
        tp = (rows.high + rows.low + rows.close) / 3
        assert (got.open, got.high, got.low, got.close, got.trades) == (rows.open.iloc[0], rows.high.max(), rows.low.min(), rows.close.iloc[-1], len(rows))
        assert got.volume == pytest.approx(rows.volume.sum()) and got.vwap == pytest.approx((tp * rows.volume).sum() / rows.volume.sum())

def test_resampling_ticks_uses_the_mid_price():
    ticks = pd.DataFrame(dict(ts=pd.to_datetime(["2024-01-02 10:00:00", "2024-01-02 10:00:40", "2024-01-02 10:01:05"]),
                              bid=[9.0, 10.0, 11.0], ask=[11.0, 12.0, 13.0], bid_size=[1.0, 1, 1], ask_size=[1.0, 1, 1]))
    b = resample(ticks, "1min", "ticks")
    assert b.open.tolist() == [10, 12] and b.high.tolist() == [11, 12] and b.trades.tolist() == [2, 1]

def test_gbm_and_order_flow_are_reproducible_and_valid():
    a, b = gbm_bars(n=300, seed=5), gbm_bars(n=300, seed=5)
    for s in a: pd.testing.assert_frame_equal(a[s], b[s]); validate(a[s])
    t1, c1 = order_flow(2000, seed=9)
    t2, c2 = order_flow(2000, seed=9)
    assert (t1 == t2).all() and (c1 == c2).all()
    share = lambda op: (c1["op"] == op).mean()
    assert 0.15 < share(1) < 0.35  # cancels
    with pytest.raises(ValidationError, match="corr 2"): gbm_bars(corr=2)

def test_appends_after_the_clock_stepped_back_read_back_in_order_and_overwrite_nothing(tmp_path, monkeypatch):
    import types, aiplatform.trading.data as data
    clock = iter([2_000, 1_000, 2_000])  # stepped back, then to the first append's time again
    monkeypatch.setattr(data, "time", types.SimpleNamespace(time_ns=lambda: next(clock)))
    bars = gbm_bars(("X",), n=30, freq="1D", seed=1)["X"]  # one yearly part folder: every append's part beside the others
    store = MarketStore(tmp_path)
    for a, b in ((0, 10), (10, 20), (20, 30)): store.write("X", bars.iloc[a:b])
    pd.testing.assert_frame_equal(store.read("X"), bars, check_freq=False)  # before: the second append first, the third one in place of the first
    assert sorted(p.name for p in (tmp_path/"bars"/"X").rglob("part-*")) == ["part-2000.parquet", "part-2001.parquet", "part-2002.parquet"]
