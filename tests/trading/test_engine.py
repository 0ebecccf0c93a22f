"The engine: many symbols, risk checks that keep commands from the books, and accounts that follow every fill."
import os, random
from fractions import Fraction
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from aiplatform.core import NotFound
from aiplatform.trading.book import cancel_fields, modify_fields, submit_fields
from aiplatform.trading.engine import SCALE, Engine, Position, RiskLimits

LIMITS = RiskLimits(max_order_qty=50, price_band_pct=20, max_open_orders=40, max_position=60)

def session(eng, rng, ids):
    "Random commands on two symbols; returns the trade events."
    trades = []
    for oid in ids:
        sym, user = rng.choice("AB"), rng.randint(1, 4)
        tick = 1 if sym == "A" else 5
        r = rng.random()
        if r < 0.6:
            events = eng.submit(sym, oid, rng.choice(["buy", "sell"]), tick * rng.randint(18, 22), rng.randint(1, 60), user,
                                tif=rng.choice(["GTC", "GTC", "IOC"]))
        elif r < 0.8: events = eng.cancel(sym, rng.randint(1, oid), user)
        else: events = eng.modify(sym, rng.randint(1, oid), qty=rng.randint(1, 60), user=user)
        trades += [(sym, e) for e in events if e.kind == "trade"]
    return trades

def test_accounts_follow_a_random_session():
    eng = Engine({"A": 1, "B": 5}, limits=LIMITS)
    trades = session(eng, random.Random(7), range(1, 3000))
    assert len(trades) > 100
    for sym in "AB":
        assert sum(eng.position(u, sym).qty for u in range(1, 5)) == 0  # every fill has two sides
        cash = [eng.position(u, sym).realized - eng.position(u, sym).avg_price * eng.position(u, sym).qty for u in range(1, 5)]
        assert sum(cash) == 0  # what buyers paid, sellers received
    live = {}
    for (sym, oid), (user, side, remaining) in eng.live.items():
        order = eng.books[sym].order(oid)
        assert order is not None and order.remaining == remaining and order.user == user and order.side == side
        live[user] = live.get(user, 0) + 1
    assert {u: n for u, n in eng.open_orders.items() if n} == live
    assert all(n <= 40 for n in eng.open_orders.values())
    for sym in "AB":
        worst = _worst(eng, sym, range(1, 5))
        assert all(max(w) <= 60 for w in worst.values()) and any(max(w) > 50 for w in worst.values()), worst  # near the limit, never past it
        assert {u: (eng.position(u, sym).qty + eng.exposure.get((u, sym), [0, 0])[0], eng.exposure.get((u, sym), [0, 0])[1] - eng.position(u, sym).qty) for u in range(1, 5)} == worst

def test_position_average_and_realised_pnl_are_exact():
    p = Position()
    for q, price in [(3, 101), (4, 102), (-10, 99), (5, 97)]: p.fill(q, price)
    assert (p.qty, p.avg_price) == (2, Fraction(97))
    assert p.realized == (99 - Fraction(3 * 101 + 4 * 102, 7)) * 7 + (99 - 97) * 3

def average_cost(fills) -> tuple:
    "The reference: average-cost accounting in plain `Fraction`s, the textbook formulas; and how many closes were partial."
    qty, avg, realized, partial = 0, Fraction(0), Fraction(0), 0
    for signed, price in fills:
        if qty == 0 or (qty > 0) == (signed > 0):
            avg, qty = (avg * abs(qty) + price * abs(signed)) / abs(qty + signed), qty + signed
            continue
        partial += abs(signed) < abs(qty)
        realized += (price - avg) * min(abs(signed), abs(qty)) * (1 if qty > 0 else -1)
        qty += signed
        if qty == 0: avg = Fraction(0)
        elif (qty > 0) == (signed > 0): avg = Fraction(price)  # flipped: the rest opened at this price
    return qty, avg, realized, partial

@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-40, 40).filter(bool), st.integers(1, 10**6)), max_size=40))
def test_a_position_keeps_the_cash_exactly_and_the_average_within_half_a_millionth_a_partial_close(fills):
    p = Position()
    for signed, price in fills: p.fill(signed, price)
    qty, avg, realized, partial = average_cost(fills)
    assert p.qty == qty and type(p.cost_m) is int and type(p.realized_m) is int
    assert p.realized - p.avg_price * p.qty == -sum(signed * price for signed, price in fills)  # realised minus open cost: the cash
    assert abs(p.realized - realized) <= Fraction(partial, 2 * SCALE) and abs(p.avg_price - avg) * abs(qty) <= Fraction(partial, 2 * SCALE)
    if qty == 0: assert p.realized == realized and p.cost == 0
    assert p.avg_price * abs(qty) == p.cost and type(p.avg_price) is (int if p.avg_price.denominator == 1 else Fraction)

def test_a_partial_close_leaves_the_average_where_it_was():
    p, fills = Position(), [(1, 100), (1, 101), (-1, 105)]
    for q, price in fills: p.fill(q, price)
    assert (p.avg_price, p.realized) == (Fraction(201, 2), Fraction(9, 2))  # before: 100 and 4, a whole price unit
    fills += [(1, 101), (-1, 101)] * 6
    for q, price in fills[3:]: p.fill(q, price)
    _, avg, realized, partial = average_cost(fills)
    assert (avg, realized) == (Fraction(12927, 128), Fraction(639, 128))  # 100.99 and 4.99
    assert abs(p.avg_price - avg) <= Fraction(partial, 2 * SCALE) and abs(p.realized - realized) <= Fraction(partial, 2 * SCALE)  # before: 100 and 4

@pytest.mark.parametrize("call,reason", [
    (lambda e: e.submit("X", 9, "buy", 100, 11, user=1), "risk_max_order_qty"),
    (lambda e: e.submit("X", 9, "buy", 10_000, 10, user=2), "risk_max_notional"),
    (lambda e: e.submit("X", 9, "buy", 111, 1, user=1), "risk_price_band"),
    (lambda e: e.submit("X", 9, "sell", 89, 1, user=1), "risk_price_band"),
    (lambda e: e.modify("X", 3, price=120, user=1), "risk_price_band"),
    (lambda e: e.submit("X", 9, "buy", 95, 1, user=3), "risk_max_open_orders")])
def test_risk_rejections_never_reach_the_book(call, reason):
    eng = Engine({"X": 1}, limits=RiskLimits(max_order_qty=10, max_notional=50_000, price_band_pct=10, max_open_orders=1),
                 user_limits={2: RiskLimits(max_order_qty=100, max_notional=5_000, price_band_pct=0)})
    eng.submit("X", 1, "sell", 100, 5, user=1)
    eng.submit("X", 2, "buy", 100, 1, user=4)  # last trade 100
    eng.submit("X", 3, "buy", 98, 1, user=3)
    before = eng.books["X"].queues()
    [event] = call(eng)
    assert (event.kind, event.reason) == ("rejected", reason) and eng.books["X"].queues() == before

@st.composite
def batches(draw, notional):
    "Batches of new orders (limit, IOC, market; buy stop-limits), cancels and modifies (of a stop-limit's stop price too) by three users, priced around `notional`'s reach."
    out, oid, owners = [], 0, {}
    for _ in range(draw(st.integers(1, 12))):
        out.append([])
        for _ in range(draw(st.integers(1, 8))):
            oid, user, side = oid + 1, draw(st.integers(1, 3)), draw(st.sampled_from(["buy", "sell"]))
            kind = draw(st.sampled_from(["limit", "limit", "market"] + (["stop_limit", "stop_limit"] if side == "buy" else [])))
            if draw(st.integers(0, 9)) == 0:
                out[-1].append(cancel_fields(draw(st.integers(1, oid)), user))
                continue
            if owners and draw(st.integers(0, 4)) == 0:
                target = draw(st.sampled_from(sorted(owners)))
                price, qty, stop = (draw(st.none() | st.integers(1, 40)) for _ in range(3))
                out[-1].append(modify_fields(target, price, qty if price or qty or stop else 1, owners[target], stop))
                continue
            owners[oid] = user
            price = draw(st.integers(1, 40)) if kind in ("limit", "stop_limit") else None
            stop = draw(st.integers(1, 40)) if kind in ("stop", "stop_limit") else None
            tif = draw(st.sampled_from(["GTC", "GTC", "IOC"])) if kind == "limit" else "GTC"
            out[-1].append(submit_fields(oid, side, price, draw(st.integers(1, 12)), user, kind=kind, tif=tif, stop_price=stop))
    return out

@settings(max_examples=int(os.environ.get("EXAMPLES", 300)), deadline=None, suppress_health_check=list(HealthCheck))
@given(batches(notional=200))
def test_no_order_trades_past_its_notional_limit(bs):
    """Whatever a batch holds, an order trades at most `max_notional` from when it is placed or modified (a modify's qty is its new remaining one,
    checked as a new order's): a sell too, though a buy stop-limit the batch triggers bids for it, or one a modify moved. Stops aside, which meet
    the book as it is once triggered: a buy stop `Market` caps; a sell stop may meet a bid a buy stop-limit triggered with it raised."""
    eng, traded = Engine({"X": 1}, limits=RiskLimits(max_notional=200, price_band_pct=0)), {}
    for batch in bs:
        for e in eng.process("X", batch):
            if e.kind == "accepted": traded[e.order_id] = 0  # new, or modified
            if e.kind == "trade":
                for o in (e.order_id, e.maker_id): traded[o] = traded.get(o, 0) + e.price * e.qty
    assert max(traded.values(), default=0) <= 200, traded

def test_a_sell_after_a_stop_moved_in_its_batch_is_checked_at_the_bid_the_stop_may_make():
    "A buy stop-limit's stop lowered within reach of the batch's trades: the sell after it is checked at the stop's limit, and refused."
    eng = Engine({"X": 1}, limits=RiskLimits(max_notional=10_000, price_band_pct=0))
    eng.submit("X", 1, "sell", 90, 1, user=3), eng.submit("X", 2, "buy", 90, 1, user=4)  # the last trade: 90
    eng.submit("X", 3, "buy", 1_000, 9, user=2, kind="stop_limit", stop_price=200)  # out of reach
    eng.submit("X", 4, "sell", 100, 1, user=3)
    batch = eng.process("X", [modify_fields(3, user=2, stop_price=100), submit_fields(5, "buy", 100, 1, 4), submit_fields(6, "sell", 100, 20, 1)])
    assert [(e.kind, e.order_id, e.reason) for e in batch][-2:] == [("triggered", 3, ""), ("rejected", 6, "risk_max_notional")]  # before: sold 9 at 1,000

def test_a_stop_limits_limit_is_banded_around_its_new_stop_when_the_stop_alone_moves():
    "With the engine's band on: a stop-limit whose stop alone moves far from its limit is refused, as it would be placed new (before: accepted)."
    eng = Engine({"X": 1}, limits=RiskLimits(price_band_pct=10))
    eng.submit("X", 1, "sell", 90, 1, user=3), eng.submit("X", 2, "buy", 90, 1, user=4)  # the last trade: 90
    eng.submit("X", 3, "buy", 104, 1, user=2, kind="stop_limit", stop_price=100)
    assert eng.submit("X", 4, "buy", 104, 1, user=2, kind="stop_limit", stop_price=92)[0].reason == "risk_price_band"
    assert eng.modify("X", 3, user=2, stop_price=92)[0].reason == "risk_price_band"
    assert eng.modify("X", 3, user=2, stop_price=96)[0].kind == "accepted" and eng.book("X").order(3).stop_price == 96

def test_unknown_symbol():
    with pytest.raises(NotFound, match="symbol 'Z': not traded"): Engine({"X": 1}).cancel("Z", 1)

def accounts(eng):
    return eng.positions, eng.live, {u: n for u, n in eng.open_orders.items() if n}, {s: b.queues() for s, b in eng.books.items()}, {k: v for k, v in eng.exposure.items() if any(v)}

@pytest.mark.parametrize("close", [True, False])
def test_journaled_engine_recovers_books_and_accounts(tmp_path, close):
    plain = Engine({"A": 1, "B": 5}, limits=LIMITS)
    session(plain, random.Random(11), range(1, 2500))
    eng = Engine({"A": 1, "B": 5}, limits=LIMITS, folder=tmp_path, snapshot_every=300, fsync="always" if not close else "batch")
    session(eng, random.Random(11), range(1, 2500))
    assert accounts(eng) == accounts(plain)
    if close: eng.close()
    else:  # a crash between the books' snapshots and the accounts that match them
        for jb in eng.journals.values(): jb.snapshot()
    again = Engine({"A": 1, "B": 5}, limits=LIMITS, folder=tmp_path)
    assert accounts(again) == accounts(plain)
    session(again, random.Random(12), range(2500, 3000))  # and it goes on as the plain engine does
    session(plain, random.Random(12), range(2500, 3000))
    assert accounts(again) == accounts(plain)
    again.close()

def test_a_snapshot_writes_only_the_books_that_moved_and_the_engine_opens_from_them_all(tmp_path, monkeypatch):
    "A market of 50 symbols, two traded: a snapshot syncs, rotates and writes those two (was every book: 5 fsyncs each, on the service's loop)."
    symbols = {f"S{i}": 1 for i in range(50)}
    eng, plain = Engine(symbols, limits=LIMITS, folder=tmp_path, snapshot_every=10**9), Engine(symbols, limits=LIMITS)
    def trade(e, symbol, first):
        e.submit(symbol, first, "buy", 20, 5, 1), e.submit(symbol, first + 1, "sell", 20, 2, 2), e.submit(symbol, first + 2, "sell", 21, 4, 2)
    for e in (eng, plain): trade(e, "S1", 1), trade(e, "S7", 4)
    fsyncs, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    eng.snapshot()
    assert sorted(p.parent.name for p in tmp_path.glob("*/snapshot-*.npz")) == ["S1", "S7"] and len(fsyncs) < 20, len(fsyncs)
    for e in (eng, plain): trade(e, "S7", 7)
    eng.snapshot()
    assert sorted(p.name for p in (tmp_path/"S7").glob("snapshot-*.npz")) == ["snapshot-00000000000000000003.npz", "snapshot-00000000000000000006.npz"]
    assert [p.name for p in (tmp_path/"S1").glob("snapshot-*.npz")] == ["snapshot-00000000000000000003.npz"]  # still the one in place
    eng.close()
    again = Engine(symbols, limits=LIMITS, folder=tmp_path)
    assert accounts(again) == accounts(plain) and again.journals["S1"].recovery["snapshot_seq"] == 3
    for e in (again, plain): trade(e, "S1", 10)
    assert accounts(again) == accounts(plain)
    again.close()

def _worst(eng, symbol, users) -> dict:
    "What each of `users` could hold in `symbol`, long and short, were all its live orders to fill, from the books themselves: (long, short)."
    out = {}
    for u in users:
        live = [eng.books[symbol].order(oid) for (s, oid), (owner, _, _) in eng.live.items() if s == symbol and owner == u]
        q = eng.position(u, symbol).qty
        out[u] = (q + sum(o.remaining for o in live if o.side == "buy"), sum(o.remaining for o in live if o.side == "sell") - q)
    return out

@settings(max_examples=int(os.environ.get("EXAMPLES", 300)), deadline=None, suppress_health_check=list(HealthCheck))
@given(batches(notional=200))
def test_no_account_could_hold_past_its_position_limit_whatever_its_batches(bs):
    """Whatever a batch holds (new orders, IOC and market orders, stop-limits, cancels, modifies), no account could ever hold more than
    `max_position` long or short, its position and its live orders all filled; what the engine keeps of them is what the books hold."""
    eng = Engine({"X": 1}, limits=RiskLimits(max_position=15, price_band_pct=0, max_notional=10**9))
    refused = 0
    for batch in bs:
        refused += sum(e.reason == "risk_max_position" for e in eng.process("X", batch))
        worst = _worst(eng, "X", (1, 2, 3))
        assert {u: (eng.position(u, "X").qty + eng.exposure.get((u, "X"), [0, 0])[0], eng.exposure.get((u, "X"), [0, 0])[1] - eng.position(u, "X").qty)
                for u in (1, 2, 3)} == worst
        assert all(max(w) <= 15 for w in worst.values()), worst

def test_a_position_limit_counts_live_orders_and_a_cancel_in_the_same_batch_frees_its_room():
    "A cancel frees what its order could trade only once it is done: an order of its batch that needs that room is checked after it: a trade earlier in the batch may fill the order first."
    eng = Engine({"X": 1}, limits=RiskLimits(max_position=10, price_band_pct=0))
    eng.submit("X", 1, "sell", 100, 6, user=2), eng.submit("X", 2, "buy", 100, 6, user=1)  # 1 holds 6
    assert eng.submit("X", 3, "buy", 99, 5, user=1)[0].reason == "risk_max_position"  # 6 + 5 > 10
    assert eng.submit("X", 4, "buy", 99, 4, user=1)[0].kind == "accepted"  # 6 + 4
    assert eng.submit("X", 5, "sell", 101, 16, user=1)[0].kind == "accepted"  # short at most 16 - 6
    batch = eng.process("X", [cancel_fields(4, user=1), submit_fields(6, "buy", 98, 4, user=1), submit_fields(7, "buy", 98, 1, user=1)])  # a quote replaced
    assert [(e.kind, e.order_id, e.reason) for e in batch] == [("cancelled", 4, "user_cancel"), ("accepted", 6, ""), ("rejected", 7, "risk_max_position")]  # each checked after those before it
    assert eng.modify("X", 6, qty=5, user=1)[0].reason == "risk_max_position" and eng.modify("X", 6, qty=3, user=1)[0].kind == "accepted"
    assert eng.submit("X", 8, "sell", 100, 20, user=1, tif="IOC")[0].reason == "risk_max_position"  # an IOC may fill whole

def test_a_modify_after_a_trade_of_its_order_in_its_batch_is_checked_as_the_trade_leaves_the_order():
    "A modify's qty is the order's new remaining one: a trade earlier in its batch leaves the order less, so the modify adds more (found by hypothesis)."
    eng = Engine({"X": 1}, limits=RiskLimits(max_position=15, price_band_pct=0))
    eng.submit("X", 1, "buy", 10, 6, user=3), eng.submit("X", 2, "sell", 10, 6, user=2)  # 3 holds 6
    eng.submit("X", 3, "sell", 5, 9, user=3)  # and could sell 9: short 3 at most
    batch = eng.process("X", [submit_fields(4, "buy", 29, 3, user=1), modify_fields(3, 6, 21, 3)])  # 3 of it sold first: 21 left would let it be short 18
    assert [(e.kind, e.order_id, e.reason) for e in batch][-1] == ("rejected", 3, "risk_max_position")
    assert eng.modify("X", 3, qty=18, user=3)[0].kind == "accepted"  # 18 left, holding 3: short 15 at most
