"""Random streams of commands through a `Market` (three symbols, three accounts, every kind of order, cancels, modifies, halts,
batches cut anywhere, the folder closed and opened again), checked after every batch: its ledger, book, feed, tape and positions
against each other, against the fills and trades its listener was told, and against the reference book."""
import random
from collections import Counter, defaultdict
import numpy as np
import pytest
from aiplatform.core import AIPlatformError
from aiplatform.trading.book import COMMAND_DTYPE, EVENT_KINDS, REASONS
from aiplatform.trading.feed import LocalBook
from aiplatform.trading.ledger import is_done
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Cancel, Modify, Order
from reference_book import ReferenceBook

SYMBOLS = [dict(symbol="DEMO", price_band_pct=0), dict(symbol="ACME", price_band_pct=10, tick_size=5, lot_size=10),
           dict(symbol="BETA", price_band_pct=10)]
SPEC = {s["symbol"]: s for s in SYMBOLS}

def order_fields(rng, symbol, cid, spread) -> dict:
    "A new order's fields: any kind and time in force, now and then post-only, an iceberg or self-trade prevention; priced near 100."
    tick, lot = SPEC[symbol].get("tick_size", 1), SPEC[symbol].get("lot_size", 1)
    near = lambda: tick * (100 // tick + rng.randint(-spread, spread))
    kind, tif = rng.choices(["limit", "market", "stop", "stop_limit"], [6, 2, 1, 1])[0], rng.choices(["GTC", "IOC", "FOK"], [6, 1, 1])[0]
    f = dict(cid=cid, symbol=symbol, side=rng.choice(["buy", "sell"]), kind=kind, tif=tif, qty=lot * rng.randint(1, 8))
    if kind in ("limit", "stop_limit"): f["price"] = near()
    if kind in ("stop", "stop_limit"): f["stop_price"] = near()
    if kind == "limit" and tif == "GTC" and rng.random() < 0.15: f["post_only"] = True
    elif kind in ("limit", "stop_limit") and tif == "GTC" and rng.random() < 0.2: f["display_qty"] = lot * rng.randint(1, f["qty"] // lot)
    if rng.random() < 0.2: f["stp"] = rng.choice(["cancel_newest", "cancel_oldest", "cancel_both"])
    return f

def stream(rng, n) -> list:
    "`n` commands of three accounts, a flush every few (an order and its cancel or modify often share a batch), now and then a reopen."
    ops, cids, spread, pflush, resume = [], defaultdict(list), rng.choice([2, 4, 12]), rng.choice([0.03, 0.1, 0.2]), {}
    for k in range(n):
        for symbol in [s for s, at in resume.items() if at <= k]: ops.append(("halt", symbol, False)); del resume[symbol]
        acct, r = rng.choice([1, 2, 3]), rng.random()
        if r < 0.12 and cids[acct]: ops.append(("cancel", acct, rng.choice(cids[acct][-8:])))
        elif r < 0.25 and cids[acct]:
            price, qty = rng.choice([None, 5 * rng.randint(18, 22)]), rng.choice([None, 10 * rng.randint(1, 6)])
            ops.append(("modify", acct, rng.choice(cids[acct][-8:]), price, qty))
        elif r < 0.28: ops.append(("cancel_all", acct, rng.choice([None, *SPEC])))
        elif r < 0.29:
            ops.append(("halt", symbol := rng.choice(list(SPEC)), True))
            resume[symbol] = k + rng.randint(1, 20)
        elif r < 0.30: ops.append(("reopen",))
        elif r < 0.30 + pflush: ops.append(("flush",))
        else:
            cid = rng.choice(cids[acct]) if cids[acct] and rng.random() < 0.05 else f"c{k}"  # now and then a repeated cid
            ops.append(("submit", acct, order_fields(rng, rng.choice(list(SPEC)), cid, spread)))
            cids[acct].append(cid)
    return ops

def event_tuple(e) -> tuple:
    return (e.seq, EVENT_KINDS.index(e.kind), e.order_id, e.maker_id, e.user, e.maker_user, e.price, e.qty, REASONS.index(e.reason))

def beyond_band(fill, around, pct) -> bool:
    "Whether a buy `fill` is above the high edge of the band around `around`, a sell below its low edge: where protection ends."
    return (fill["price"] - around if fill["side"] == "buy" else around - fill["price"]) * 100 > pct * around

class Stream:
    "A market in `folder` and what the checks compare it with: reference books fed its commands, the feed's local books, what it published."
    def __init__(self, folder, **kw):
        self.folder, self.kw, self.refs = folder, kw, {s: ReferenceBook(SPEC[s].get("tick_size", 1)) for s in SPEC}
        self.fills, self.trades, self.around, self.calls, self.differ, self.halted = defaultdict(list), defaultdict(list), {}, [], [], {}
        self.matched = defaultdict(list)  # symbol: (seq, price, qty) of each trade the engine made
        self.told = {}  # order id: the last status the listeners were told
        self.open(SYMBOLS)

    def open(self, symbols=()):
        self.m = m = Market(self.folder, symbols, **self.kw)
        m.listeners.append(self.listen)
        self.local = {s: LocalBook(s) for s in m.specs}
        for s, book in self.local.items(): book.apply(m.feeds[s].snapshot())
        run = m.engine._run
        def through_reference(symbol, rows):  # an assert here would be caught by the batch (its symbol halted): kept for `check`
            events = run(symbol, rows)
            want = self.refs[symbol].process(np.array([tuple(map(int, r)) for r in rows], COMMAND_DTYPE))
            if (got := [event_tuple(e) for e in events]) != want: self.differ.append((symbol, rows, got, want))
            self.matched[symbol] += [(e.seq, e.price, e.qty) for e in events if e.kind == "trade"]
            return events
        m.engine._run = through_reference

    def listen(self, symbol, changed, fills, trades, delta):
        for oid, state in changed.items(): self.told[oid] = state["status"]
        for f in fills: self.fills[f["order_id"]].append(f)
        self.trades[symbol] += trades
        if delta is not None: self.local[symbol].apply(delta)  # BookOutOfSync on a gap or a wrong checksum

    def do(self, op):
        m, what = self.m, op[0]
        if what == "flush": m.flush(); return self.check()
        if what == "reopen": return self.reopen()
        if what == "halt": self.halted[op[1]] = m.halt(op[1], op[2]).halted; return
        if what == "cancel_all": return m.cancel_all(op[1], op[2])
        self.calls.append((op, replies := []))
        reply = lambda ok, state, error: replies.append((ok, dict(state), error))
        try:
            if what == "cancel": m.cancel(op[1], Cancel(cid=op[2]), reply)
            elif what == "modify": m.modify(op[1], Modify(cid=op[2], price=op[3], qty=op[4]), reply)
            elif m.submit(op[1], order := Order(**op[2]), reply) and order.kind in ("market", "stop"):
                book = m.engine.book(order.symbol)  # its band's centre: its stop price, the last trade, or the best price it would take; None: nothing to take, protected in its batch
                best = book.depth(1)["asks" if order.side == "buy" else "bids"]
                self.around[m.cids.ids[op[1], order.cid]] = order.stop_price or (None if not best else book.last_price or best[0][0])
        except AIPlatformError:  # refused at once (tick, lot, band, halt, an unknown or done cid): no reply, nothing queued
            assert replies == [], f"{op} raised and replied {replies}"
            self.calls.pop()

    def reopen(self):
        "Close (which sends what waits) and open the folder again: the same orders, books, positions, halts and client order ids."
        self.m.close(); before = self.saved()
        self.open(); after = self.saved()
        for what in before: assert before[what] == after[what], f"after reopening, {what} differ"
        self.check()

    def saved(self) -> dict:
        m, plain = self.m, lambda p: (p.qty, p.cost, p.realized)
        return dict(orders={oid: {k: v for k, v in s.items() if k != "created_ns"} for oid, s in m.ledger.orders.items()},
                    depth={s: m.engine.book(s).depth(1000) for s in m.specs}, cids=dict(m.cids.ids), next_id=m.cids.next_id,
                    positions={k: plain(p) for k, p in m.engine.positions.items() if plain(p) != (0, 0, 0)},
                    halted={s: spec.halted for s, spec in m.specs.items()})

    def check(self):
        m = self.m
        assert not m.pending and not self.differ, f"the engine's events differ from the reference book's: {self.differ[:1]}"
        for op, replies in self.calls:
            assert len(replies) == 1, f"{op} answered {len(replies)} times: {replies}"
            if op[0] == "submit" and (state := m.ledger.orders.get(replies[0][1]["order_id"])) is not None:  # a subscriber to the account's orders hears its end
                assert self.told.get(state["order_id"]) == state["status"], f"{op}: the listeners were told {self.told.get(state['order_id'])}, the ledger says {state['status']}"
        self.calls = []
        halted = {s: spec.halted for s, spec in m.specs.items()}
        assert halted == {s: self.halted.get(s, False) for s in m.specs}, f"halted {halted}: a batch failed (see the log)"
        self.check_bands()
        self.check_orders()
        for s in m.specs: self.check_book(s)
        self.check_trades()

    def check_bands(self):
        "No fill of a banded market or stop order beyond the band around its stop price, or the last trade or best price when queued (with nothing to take then, the last trade before its first fill)."
        for oid, around in self.around.items():
            symbol = self.m.ledger.orders[oid]["symbol"]
            if not (pct := self.m.specs[symbol].price_band_pct) or not (fs := self.fills[oid]): continue
            if around is None:  # nothing to take when queued: around what the commands before it left
                seq = int(fs[0]["fill_id"].split(":")[1])
                around = max(((t["seq"], t["price"]) for t in self.trades[symbol] if t["seq"] < seq), default=(0, fs[0]["price"]))[1]
            out = [(f["price"], f["qty"]) for f in fs if beyond_band(f, around, pct)]
            assert not out, (f"order {oid} ({self.m.ledger.orders[oid]['kind']} {fs[0]['side']}) filled at {out}, beyond {pct}% "
                             f"around {around}; its fills {[(f['price'], f['qty']) for f in fs]}")

    def check_orders(self):
        "Every order's filled quantity and notional are its fills'; an open one's remaining is the rest of its qty, a done one's 0."
        m = self.m
        for oid, st in m.ledger.orders.items():
            fs = self.fills[oid]
            assert st["status"] != "new" and m.cids.ids[st["account"], st["cid"]] == oid, st
            assert (st["filled"], st["notional"]) == (sum(f["qty"] for f in fs), sum(f["qty"] * f["price"] for f in fs)), (st, fs)
            assert all((f["account"], f["side"], f["symbol"]) == (st["account"], st["side"], st["symbol"]) for f in fs), (st, fs)
            if st["status"] == "open": assert st["filled"] + st["remaining"] == st["qty"] and st["remaining"] > 0, st
            if is_done(st): assert st["remaining"] == 0, st

    def check_book(self, s):
        "The book holds the ledger's open orders of `s`, as `engine.live` does; its depth their shown qty's, the reference's, the feed's."
        m, book, resting, shown = self.m, self.m.engine.book(s), {}, Counter()
        for side, levels in book.queues().items():  # bids, asks and the waiting stops
            for price, queue in levels:
                for oid, vis, rem in queue: resting[oid] = (side, price, rem); shown[side, price] += vis
        open_ = {oid: st for oid, st in m.ledger.orders.items() if st["symbol"] == s and st["status"] == "open"}
        live = {oid for sym, oid in m.engine.live if sym == s}
        assert set(resting) == set(open_) == live, f"{s}: in the book {sorted(resting)}, open {sorted(open_)}, live {sorted(live)}"
        for oid, st in open_.items():
            side, price, rem = resting[oid]
            info, want = book.order(oid), st["price"] if side in ("bids", "asks") else st["stop_price"]
            assert (price, rem, info.user, info.side) == (want, st["remaining"], st["account"], st["side"]), f"{s}: {resting[oid]} vs {st}"
            assert list(m.engine.live[s, oid]) == [st["account"], st["side"], st["remaining"]], f"{s}: {m.engine.live[s, oid]} vs {st}"
        depth = book.depth(1000)
        assert depth == {side: sorted(((p, q) for (sd, p), q in shown.items() if sd == side and q), reverse=side == "bids")
                         for side in ("bids", "asks")}, f"{s}: depth {depth} vs the open orders' shown qty {shown}"
        assert depth == self.refs[s].depth(1000) and book.last_price == self.refs[s].last, f"{s}: {depth} vs the reference's"
        assert self.local[s].depth() == book.depth(10) and self.local[s].checksum() == m.feeds[s].checksum, f"{s}: {self.local[s].depth()}"

    def check_trades(self):
        "The trades published the engine's; each one taker's and one maker's fill at its price and qty; the tape the trades published; positions the fills of trades."
        m, by_trade = self.m, defaultdict(dict)
        fills = [f for fs in self.fills.values() for f in fs]
        assert len({f["fill_id"] for f in fills}) == len(fills), "a fill published twice"
        for f in fills: by_trade[f["fill_id"].rsplit(":", 1)[0]][f["liquidity"]] = f
        for s in self.matched: assert [(t["seq"], t["price"], t["qty"]) for t in self.trades[s]] == self.matched[s], f"{s}: the trades published are not the engine's"
        trades = {f"{s}:{t['seq']}": t for s, ts in self.trades.items() for t in ts}
        assert trades.keys() == by_trade.keys(), f"trades published {sorted(trades)}, with fills {sorted(by_trade)}"
        for k, t in trades.items():
            assert by_trade[k].keys() == {"taker", "maker"}, (t, by_trade[k])
            taker, maker = by_trade[k]["taker"], by_trade[k]["maker"]
            assert taker["price"] == maker["price"] == t["price"] and taker["qty"] == maker["qty"] == t["qty"], (t, taker, maker)
            assert taker["side"] == t["side"] != maker["side"], (t, taker, maker)
        for s in m.specs:
            tape = [(t["seq"], t["price"], t["qty"], t["side"]) for t in m.tape[s]]
            assert tape == [(t["seq"], t["price"], t["qty"], t["side"]) for t in self.trades[s][-m.ledger.tape_len:]], f"{s}: the tape {tape[-3:]}"
        qty, cash = Counter(), Counter()
        for pair in by_trade.values():
            if pair["taker"]["account"] == pair["maker"]["account"]: continue  # with itself: its position as it was
            for f in pair.values():
                signed = f["qty"] if f["side"] == "buy" else -f["qty"]
                qty[f["account"], f["symbol"]] += signed
                cash[f["account"], f["symbol"]] -= signed * f["price"]
        for key in qty.keys() | m.engine.positions.keys():
            p = m.engine.position(*key)
            assert (p.qty, p.realized - p.avg_price * p.qty) == (qty[key], cash[key]), f"{key} {p}: fills' qty {qty[key]}, cash {cash[key]}"

@pytest.mark.parametrize("seed", range(16))  # 6 and 11 met the unprotected market order of e61eb15's parent
def test_a_random_stream_keeps_the_market_consistent(tmp_path, seed):
    "400 commands, each batch checked, then a reopen; a third of the streams snapshot every 7 commands (in a child process)."
    s = Stream(tmp_path, fsync="never", snapshot_every=(7, 100_000, 100_000)[seed % 3])
    for op in stream(random.Random(seed), 400): s.do(op)
    s.reopen()
    s.m.close()

def test_a_market_order_queued_before_the_first_trade_trades_within_its_band(tmp_path):
    "Nothing to take when queued, no trade yet: the orders before it in its batch give its band's centre (it traded at 1000)."
    s = Stream(tmp_path, fsync="never")
    for cid, price in [("s1", 100), ("s2", 1000)]: s.do(("submit", 1, dict(cid=cid, symbol="BETA", side="sell", price=price, qty=1)))
    s.do(("submit", 2, dict(cid="m", symbol="BETA", side="buy", kind="market", qty=2)))
    s.do(("flush",))
    assert [(f["price"], f["qty"]) for f in s.fills[3]] == [(100, 1)] and s.m.ledger.orders[3]["status"] == "cancelled"
    s.m.close()

def test_a_batch_of_a_symbol_halted_since_is_refused_and_the_others_sent(tmp_path):
    "Orders queued, then their symbol halted before the batch: they are rejected as halted, and the other symbol's orders still go."
    s = Stream(tmp_path, fsync="never")
    for symbol in ("DEMO", "BETA"): s.do(("submit", 1, dict(cid=symbol, symbol=symbol, side="buy", price=100, qty=1)))
    s.do(("halt", "DEMO", True))
    s.do(("flush",))
    assert [(o["status"], o["reason"][:19]) for o in s.m.ledger.orders.values()] == [("rejected", "symbol DEMO: halted"), ("open", "")]
    s.m.close()

def test_orders_and_modifies_of_a_symbol_halted_since_they_were_queued_are_answered_as_halted_then(tmp_path):
    "A 409 (`Conflict`), as when they came after the halt: a client sends a refused modify again once the symbol is resumed."
    m, answers = Market(tmp_path, [{"symbol": "DEMO", "price_band_pct": 0}]), []
    answer = lambda ok, state, error: answers.append((ok, state["cid"], state["status"], type(error).__name__, getattr(error, "status", 422)))
    m.submit(1, Order(cid="open", symbol="DEMO", side="buy", qty=1, price=10), answer)
    m.flush()
    m.submit(1, Order(cid="new", symbol="DEMO", side="buy", qty=1, price=10), answer)
    m.modify(1, Modify(cid="open", qty=2), answer)
    m.submit(1, Order(cid="new", symbol="DEMO", side="buy", qty=1, price=10), answer)  # sent again, in the same batch
    m.halt("DEMO")  # before their batch runs
    m.flush()
    m.submit(1, Order(cid="new", symbol="DEMO", side="buy", qty=1, price=10), answer)  # and again after it
    halted = (False, "new", "rejected", "Conflict", 409)
    assert answers[1:] == [halted, (False, "open", "open", "Conflict", 409), halted, halted]  # before: 422 each, as if final
    assert m.ledger.orders[2]["reason"].startswith("symbol DEMO: halted")
    m.close()

def test_a_batch_cut_in_parts_tells_each_order_once_its_newest_state_after_its_answers(tmp_path):
    "An order changed again by a later part of its batch: its answers (all parts' go first) told its newest state; the earlier part's news no longer tells an older one."
    m, told, answers = Market(tmp_path, [{"symbol": "DEMO", "price_band_pct": 0}]), [], []
    m.listeners.append(lambda symbol, changed, fills, trades, delta: told.extend((s["cid"], s["filled"], s["remaining"]) for s in changed.values()))
    answer = lambda ok, state, error: answers.append((state["cid"], state["filled"], state["remaining"]))
    m.submit(1, Order(cid="A", symbol="DEMO", side="sell", qty=5, price=100), answer)
    m.modify(1, Modify(cid="A", qty=6), answer)  # names A again: a second part
    m.submit(2, Order(cid="B", symbol="DEMO", side="buy", qty=2, price=100), answer)
    m.flush()
    assert answers == [("A", 0, 5), ("A", 2, 4), ("B", 2, 0)]
    assert [t for t in told if t[0] == "A"] == [("A", 2, 4)]  # before: ("A", 0, 5) told after the answer ("A", 2, 4), at the same time stamp
    m.close()

def test_each_change_an_account_is_told_is_stamped_no_earlier_than_the_news_before_it(tmp_path):
    "A client's catch-up asks for what changed since the newest stamp it was told (`since_ns`): an order refused at a halt, told after newer news (its batch split at MAX_BATCH), was stamped when it came."
    import itertools
    from aiplatform.trading.market import MAX_BATCH
    ticks = itertools.count(1_000)
    m = Market(tmp_path, [{"symbol": "DEMO", "price_band_pct": 0}, {"symbol": "OTHER", "price_band_pct": 0}], clock=lambda: next(ticks))
    told = []  # what an orders subscriber of account 2 is sent, in order
    m.listeners.append(lambda symbol, changed, fills, trades, delta: told.extend((s["cid"], s["updated_ns"]) for s in changed.values() if s["account"] == 2))
    m.submit(2, Order(cid="B", symbol="OTHER", side="buy", qty=1, price=10), lambda *a: None)
    for i in range(MAX_BATCH): m.submit(1, Order(cid=f"x{i}", symbol="OTHER", side="buy", qty=1, price=10), lambda *a: None)
    m.submit(2, Order(cid="A", symbol="DEMO", side="buy", qty=1, price=10), lambda *a: None)  # queued past MAX_BATCH
    m.halt("DEMO")  # before its batch runs
    m.flush(), m.flush()
    assert [cid for cid, _ in told] == ["B", "A"] and told[1][1] >= told[0][1], told  # before: A's stamp, its submit's, was older than B's
    m.close()
