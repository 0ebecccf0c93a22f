"""The `Market` (one symbol, then three with their ticks, lots, bands, halts; three accounts; in process) against a plain model of it, on random streams (hypothesis): orders
matched by `ReferenceBook`; client order ids, order states, risk limits, positions and replies kept here in plain Python.
Streams of limit (GTC, IOC, FOK; now and then post-only, an iceberg, self-trade prevention), market, stop and stop-limit
orders, cancels and modifies (own, of cids another account uses, unknown; a waiting stop's stop price too), cancel_all, repeated client order ids, risk
refusals, batches flushed anywhere, and the folder closed and opened again (snapshots every few commands): after every batch,
every reply, order, fill, position and the book are the model's; after a reopen, all of it as before.

The model states the market's batch rules as they are: a batch is cut into parts where a command names an order an earlier
one of its part names (and before a market buy, and after a stop's modify), and each part's risk checks see the book as it was before the part (a GTC order
that trades in full still holds an open-order place for the orders after it in its part) but where the engine cuts the part itself (`Cuts`:
before a sell that a buy stop-limit the part may trigger would bid too much for, the commands before it go first); and each account forgets its oldest done orders
past `keep_done` in the order the market's ledger file tells of their ends, which a reopen reads back: a batch's refusals
by a risk limit first (written before its answers), then its other ends (after)."""
import os, random, tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from aiplatform.core import Conflict, NotFound, ValidationError
from aiplatform.trading.book import (ACCEPTED, BUY, CANCELLED, COMMAND_DTYPE, KINDS, OP_CANCEL, OP_MODIFY, OP_SUBMIT, REASONS, REJECTED,
                                     SELL, STPS, TRADE)
from aiplatform.trading.engine import SCALE, RiskLimits
from aiplatform.trading import market as market_module
from aiplatform.trading.ledger import is_done
from aiplatform.trading.market import HALTED, Done, Market, SymbolSpec
from aiplatform.trading.orders import MAX_PRICE, Cancel, Modify, Order, plain_order
from reference_book import ReferenceBook

SYMBOL = "DEMO"
ACCOUNTS = (1, 2, 3)

def check_open_orders(ledger):
    "The ledger's index of each account's orders not done (`Ledger.open_orders`) holds every such order, the very state it keeps, in the order placed, and no other."
    want = {a: [oid for oid, s in orders.items() if not is_done(s)] for a, orders in ledger.accounts.items()}
    assert {a: list(o) for a, o in ledger.open_orders.items()} == {a: ids for a, ids in want.items() if ids}, (ledger.open_orders, want)
    assert all(s is ledger.accounts[a][oid] for a, o in ledger.open_orders.items() for oid, s in o.items())
CIDS = tuple("abcdefgh")  # few, shared by the accounts: each account's own, repeated often, and another's name of an order
LIMITS = RiskLimits(max_order_qty=10, max_notional=10**12, price_band_pct=0, max_open_orders=3)  # qty 11 and a 4th open order refused
NO_RISK = RiskLimits(price_band_pct=0)  # nothing these streams send is refused by a risk limit
DONE = ("filled", "cancelled", "rejected", "lost")
FIELDS = ("order_id", "account", "cid", "symbol", "side", "kind", "tif", "price", "stop_price", "qty", "remaining", "filled", "notional", "status", "reason")

# -- the model

def cancel_all_requests(model, account, symbol, oids) -> tuple:
    """A cancel_all's cids and the requests it queues in `model`, as `Market.cancel_all`: none while one of the same account and symbol waits,
    nothing placed nor flushed since (answered with it); else a cancel an open order, and for the orders whose cancel is queued already
    one answer a symbol, after them, naming the first of them."""
    key, now = (account, symbol), (model.next_id, model.batches)
    if (same := model.cancelling_all.get(key)) and same[0] == now: return same[1], same[2]
    queued = {p["oid"] for p in model.pending if p["op"] == "cancel"}
    requests, waiting = [dict(op="cancel", oid=oid, o=model.orders[oid], expect=None) for oid in oids if oid not in queued], {}
    for oid in oids:
        if oid in queued: waiting.setdefault(model.orders[oid].get("symbol"), oid)
    requests += [dict(op="answer", oid=oid, o=model.orders[oid], expect=None) for oid in waiting.values()]  # an answer names its order in its part, as a command
    model.pending += requests
    cids = [model.orders[oid]["cid"] for oid in oids]
    if oids: model.cancelling_all[key] = (now, cids, requests)
    return cids, requests

class Model:
    "What the market should do: the book's matching is `ReferenceBook`'s, the rest is stated here."
    def __init__(self, keep_done=10_000, limits=LIMITS):
        self.limits, self.book, self.keep_done, self.ended = limits, ReferenceBook(1), keep_done, {}  # account -> its done orders' ids, in the order the ledger tells of their ends
        self.refused, self.others = [], []  # a flush's orders refused by a risk limit, and its other done ones: told in that order
        self.orders, self.cids, self.next_id, self.pending = {}, {}, 1, []
        self.pos = {}  # account -> [qty, cost, realized, closes], exact
        self.cash, self.fills = Counter(), {}  # account -> its fills, oldest first
        self.moving = {}  # a part's modifies of stops: order id -> its new stop price, which its accepted event does not carry
        self.batches, self.cancelling_all = 0, {}  # batches flushed; (account, symbol) -> (next_id, batches, cids, requests) of the last cancel_all

    # calls: what the market answers at once (an exception class, or None: queued or answered by `reply`)
    def submit(self, account, f, expect):
        if (oid := self.cids.get((account, f["cid"]))) is not None:
            if self.orders[oid]["status"] == "new": self.pending.append(dict(op="answer", oid=oid, expect=expect))
            else: expect(self.answer(oid))
            return False
        last = self.book.last
        if f.get("stop_price") is not None and last is not None and (f["stop_price"] <= last if f["side"] == "buy" else f["stop_price"] >= last):
            return ValidationError  # it would trade at once
        oid, self.next_id = self.next_id, self.next_id + 1
        self.cids[account, f["cid"]] = oid
        self.orders[oid] = dict(order_id=oid, account=account, cid=f["cid"], symbol=SYMBOL, side=f["side"], kind=f["kind"], tif=f["tif"],
                                price=f.get("price"), qty=f["qty"], remaining=f["qty"], filled=0, notional=0, status="new", reason="",
                                stp=f.get("stp", "none"), post=f.get("post_only", False), display=f.get("display_qty"), stop_price=f.get("stop_price"))
        self.pending.append(dict(op="submit", oid=oid, expect=expect))
        return True

    def live(self, account, cid):
        if (oid := self.cids.get((account, cid))) is None: return NotFound
        return Done if self.orders[oid]["status"] in DONE else oid

    def cancel(self, account, cid, expect):
        if not isinstance(oid := self.live(account, cid), int): return oid
        self.pending.append(dict(op="cancel", oid=oid, expect=expect))

    def modify(self, account, cid, price, qty, stop, expect):
        if not isinstance(oid := self.live(account, cid), int): return oid
        o = self.orders[oid]
        if price is not None and o["kind"] in ("market", "stop"): return ValidationError
        waiting = o["stop_price"] is not None and (o["status"] == "new" or self.book.orders[oid].stop_waiting)
        if stop is not None and not waiting: return ValidationError if o["stop_price"] is None else Conflict  # none, or triggered
        if waiting and any(p["op"] == "modify" and p["oid"] == oid for p in self.pending): return Conflict  # one modify of a stop a batch
        if reached(stop, o["side"], self.book.last): return ValidationError
        if waiting and o["kind"] == "stop" and not (stop is None and (qty or 0) <= o["remaining"]) and (sent := self.sent(o)):  # its cap moves with its qty (and is never below its stop); not with a lower qty alone
            limit = max(min(self.limits.max_notional // (qty or o["remaining"]), MAX_PRICE), stop or o["stop_price"])
            if limit != sent: price = limit
        self.pending.append(dict(op="modify", oid=oid, price=price, qty=qty, stop=stop, expect=expect))

    def sent(self, o) -> int:
        "The limit price the book holds (or will) for the order `o`: 0 for none."
        if (held := self.book.orders.get(o["order_id"])) is not None: return held.price
        return (capped(o, self.limits, 1) or (0, 0, 0))[2]

    def cancel_all(self, account):
        cids, self.cancels = cancel_all_requests(self, account, None, [oid for oid, o in sorted(self.orders.items()) if o["account"] == account and o["status"] not in DONE])
        return cids

    def answer(self, oid):
        "A reply: (ok, reason class, the order's state as told)."
        o = self.orders[oid]
        return (o["status"] not in ("rejected", "lost"), o["reason"] if o["status"] in ("rejected", "lost") else None, told(o))

    # a flush: the batch cut into parts where a command names an order an earlier one of its part names, and before a market buy
    def flush(self):
        self.batches += bool(self.pending)
        parts, named, moved = [[]], set(), False
        for r in self.pending:
            alone = r["op"] == "submit" and (o := self.orders[r["oid"]])["kind"] == "market" and o["side"] == "buy"  # no band: checked at the price it reaches
            if r["op"] != "answer" and (r["oid"] in named or alone or moved) and parts[-1]: parts.append([]); named = set()
            parts[-1].append(r); named.add(r["oid"])
            if r["op"] != "answer": moved = r["op"] == "modify" and self.orders[r["oid"]]["stop_price"] is not None  # after a stop's modify: a new part
        self.pending = []
        for part in parts: self.run(part)
        for o in self.refused + self.others: self.ended.setdefault(o["account"], []).append(o["order_id"])
        self.refused, self.others = [], []
        self.retire()

    def retire(self):
        "Each account keeps its newest `keep_done` done orders; an older one is forgotten, and its cid names a new order again."
        for ended in self.ended.values():
            while len(ended) > self.keep_done:
                o = self.orders.pop(ended.pop(0))
                if self.cids.get((o["account"], o["cid"])) == o["order_id"]: del self.cids[o["account"], o["cid"]]

    def run(self, part):
        """One part: risk checked against the book as it was before the part; the rest to the book as one batch (cut where the engine
        cuts it: `Cuts`; what went before, then checked against the book it leaves); then each answered."""
        refused, rows = {}, []
        def send():
            fields = COMMAND_DTYPE.names
            for e in self.book.process(np.array([tuple(c.get(f, 0) for f in fields) for c in rows], COMMAND_DTYPE)): self.event(e, refused)
            rows.clear()
            self.moving.clear()  # the stop prices of the modifies the book refused: never told
            live = {oid: o.user for oid, o in self.book.orders.items()}
            return live, Counter(live.values()), Counter(), set(), Cuts(self.book, self.limits)
        live, count, more, freed, cuts = send()
        for r in part:
            o = self.orders[r["oid"]]
            user = o["account"]
            if r["op"] == "cancel":
                if live.get(r["oid"]) == user and r["oid"] not in freed: freed.add(r["oid"]); more[user] -= 1
                rows.append(dict(op=OP_CANCEL, order_id=r["oid"], user=user))
            elif r["op"] == "modify":
                if r["qty"] is not None and r["qty"] > self.limits.max_order_qty: refused[r["oid"]] = "risk_max_order_qty"; continue
                row = dict(op=OP_MODIFY, order_id=r["oid"], user=user, price=r["price"] or 0, qty=r["qty"] or 0, stop_price=r["stop"] or 0)
                if rows and cuts.due(row): live, count, more, freed, cuts = send()
                cuts.passed(row)
                rows.append(row)
                if r["stop"]: self.moving[r["oid"]] = r["stop"]
            elif r["op"] == "submit":
                kind, tif, price = capped(o, self.limits, 1) or (o["kind"], o["tif"], o["price"])
                row = dict(op=OP_SUBMIT, order_id=r["oid"], user=user, side=("buy", "sell").index(o["side"]), kind=KINDS.index(kind),
                           tif=("GTC", "IOC", "FOK").index(tif), price=price or 0, stop_price=o["stop_price"] or 0,
                           qty=o["qty"], display_qty=o["display"] or 0, post_only=int(o["post"]), stp=STPS.index(o["stp"]))
                rests = o["kind"] in ("stop", "stop_limit") or o["kind"] == "limit" and o["tif"] == "GTC"
                why = lambda: "risk_max_order_qty" if o["qty"] > self.limits.max_order_qty else "risk_max_open_orders" if rests and count[user] + more[user] >= self.limits.max_open_orders else None
                if not why() and rows and cuts.due(row): live, count, more, freed, cuts = send()
                if reason := why(): self.end(o, "rejected", reason, self.refused); continue
                if rests: more[user] += 1
                cuts.passed(row)
                rows.append(row)
        if rows: send()
        for r in part:
            if r["expect"] is None: continue  # a cancel of cancel_all: its outcome is in the states
            o = self.orders[r["oid"]]
            if r["op"] in ("submit", "answer"): r["expect"](self.answer(r["oid"]))
            elif (why := refused.get(r["oid"])) == "unknown_id" and o["status"] in DONE or why == "invalid_combination" and r.get("stop"):
                r["expect"]((False, Conflict, told(o)))  # done, or a stop triggered, earlier in the batch: as if it came after
            else: r["expect"]((why is None, why, told(o)))

    def end(self, o, status, reason, told=None):
        o.update(status=status, reason=reason, remaining=0)
        (self.others if told is None else told).append(o)

    def position(self, account, symbol): return account  # whose position a fill moves: the account's (one symbol)
    def rest(self, symbol): return "no_liquidity_within_max_notional"  # why a market (stop) order sent as an IOC limit ends untraded: no band here, a capped buy stop

    def event(self, e, refused, symbol=SYMBOL):
        seq, kind, oid, maker, user, maker_user, price, qty, reason = e
        o, why = self.orders.get(oid), REASONS[reason]
        if o is None: refused[oid] = why; return  # a cancel (modify) of an order done and forgotten while it was in flight: unknown to the book
        if kind == ACCEPTED:  # a new order's, or a modify's: its qty becomes what it filled and what it has left
            o.update(status="open", remaining=qty, qty=o["filled"] + qty)
            if price and o["kind"] in ("limit", "stop_limit"): o["price"] = price  # a market (stop) order keeps its own, none: not its IOC limit
            if oid in self.moving: o["stop_price"] = self.moving.pop(oid)
        elif kind == TRADE:
            for t, tag in ((o, "t"), (self.orders[maker], "m")):
                self.fills.setdefault(t["account"], []).append((f"{symbol}:{seq}:{tag}", t["order_id"], t["cid"], t["side"], price, qty))
                t["filled"], t["remaining"], t["notional"] = t["filled"] + qty, t["remaining"] - qty, t["notional"] + price * qty
                if t["remaining"] == 0: t["status"] = "filled"; self.others.append(t)
            if user != maker_user:  # with itself: its position as it was
                for t in (o, self.orders[maker]): self.fill(self.position(t["account"], symbol), qty if t["side"] == "buy" else -qty, price)
        elif kind == CANCELLED: self.end(o, "cancelled", self.rest(symbol) if why == "ioc_remainder" and o["kind"] in ("market", "stop") else why)
        elif kind == REJECTED:
            if o["status"] == "new": self.end(o, "rejected", why)
            else: refused[oid] = why

    def fill(self, account, signed, price):
        "Average cost: a fill adding to the position adds its cost; one reducing it realises the difference at the average."
        p = self.pos.setdefault(account, [0, Fraction(0), Fraction(0), 0])
        self.cash[account] -= signed * price
        qty, cost = p[0], p[1]
        if qty == 0 or (qty > 0) == (signed > 0): p[0], p[1] = qty + signed, cost + price * abs(signed); return
        closed = min(abs(signed), abs(qty))
        share = cost * closed / abs(qty)
        p[2] += (price * closed - share) * (1 if qty > 0 else -1)
        p[1], p[0], p[3] = cost - share, qty + signed, p[3] + 1
        if p[0] and (p[0] > 0) == (signed > 0): p[1] = Fraction(price * abs(p[0]))  # flipped: the rest opened at this price

def told(o) -> tuple: return (o["order_id"], o["status"], o["filled"], o["remaining"])

class Cuts:
    """What `Engine.process` follows through a part to cut it before a sell (or modify) that a buy stop-limit, which the commands
    before it may trigger, would bid too much for: the best bid (read once a sell needs it), the highest a buy of the part bids,
    the highest price the part may trade at, and the buy stop that triggers next."""
    def __init__(self, book, limits): self.book, self.limits, self.top, self.raised, self.high, self.trigger = book, limits, None, 0, 0, min(book.stops[BUY], default=None)

    def bid(self):
        if self.top is None: self.top = self.book.best(BUY) or 0
        return max(self.top, self.raised)

    def stop_bid(self, upto) -> int:
        "The highest limit of the buy stop-limits waiting at a stop of `upto` or below, and at the stops those limits reach in turn."
        best = 0
        for stop in sorted(self.book.stops[BUY]):
            if stop > max(upto, best): break
            best = max([best] + [o.price for o in self.book.stops[BUY][stop]])
        return best

    def due(self, row) -> bool:
        "Whether the engine cuts before `row` (which passed its own checks): a sell that takes, met by a bid past its notional limit."
        if self.trigger is None or self.high < self.trigger: return False
        if row["op"] == OP_SUBMIT:
            if row["side"] != SELL or row["post_only"] or KINDS[row["kind"]] not in ("limit", "market"): return False
            qty = row["qty"]
        else:
            o = self.book.orders.get(row["order_id"])
            if o is None or o.side != SELL or o.stop_waiting or not row["price"]: self.bid(); return False
            qty = row["qty"] or o.remaining
        return max(row["price"], self.bid(), self.stop_bid(self.high)) * qty > self.limits.max_notional

    def passed(self, row):
        "Follow a command that goes to the book: the price it may trade at, and what a buy bids."
        sells = row["op"] != OP_SUBMIT or row["side"] == SELL
        bid = self.bid() if sells else None
        if self.trigger is not None:
            if row["op"] == OP_SUBMIT: at = (row["price"] if KINDS[row["kind"]] in ("limit", "stop_limit") else MAX_PRICE) if row["side"] == BUY else bid if row["price"] <= bid else 0
            else: at = max(row["price"], bid) if row["price"] else 0
            self.high = max(self.high, at)
        if row["op"] == OP_SUBMIT:
            if row["side"] == BUY and row["tif"] == 0 and row["price"] > self.raised: self.raised = row["price"]
        elif row["price"] and (o := self.book.orders.get(row["order_id"])) is not None and o.side == BUY: self.raised = max(self.raised, row["price"])

def reached(stop, side, last) -> bool: return stop is not None and last is not None and (stop <= last if side == "buy" else stop >= last)

def capped(o, limits, tick):
    """A buy stop in a symbol with no band as the book gets it, (kind, tif, price): a stop-limit IOC (FOK) at the highest price on the ticks
    its qty may pay within `max_notional` (at most `MAX_PRICE`); None (as it was) if that is below its stop, or with the engine's band on."""
    if o["kind"] != "stop" or o["side"] != "buy" or limits.price_band_pct: return None
    cap = min(limits.max_notional // o["qty"], MAX_PRICE) // tick * tick
    return ("stop_limit", "IOC" if o["tif"] == "GTC" else o["tif"], cap) if cap >= o["stop_price"] else None

# -- the stream

def _step(r: random.Random) -> tuple:
    "One step: mostly new orders (one in eleven a market order, one in eleven a stop or stop-limit), and now and then everything else."
    what, acct, c = r.choices(["submit", "cancel", "modify", "flush", "cancel_all", "restart"], [12, 2, 2, 3, 0.5, 0.5])[0], r.choice(ACCOUNTS), r.choice(CIDS)
    if what == "submit":
        kind, tif = r.choices(["limit", "market", "stop", "stop_limit"], [18, 2, 1, 1])[0], r.choices(["GTC", "IOC", "FOK"], [6, 1, 1])[0]
        f = dict(kind=kind, tif=tif)
        if kind in ("stop", "stop_limit"): f["stop_price"] = r.randint(95, 105)
        if r.random() < 0.15: f["stp"] = r.choice(STPS[1:])
        if kind == "limit" and tif == "GTC" and r.random() < 0.1: f["post_only"] = True
        elif kind == "limit" and tif == "GTC" and r.random() < 0.1: f["display_qty"] = r.randint(1, 3)
        qty = r.randint(1, 11)  # 11: past max_order_qty
        if f.get("display_qty", 0) > qty: f["display_qty"] = qty
        return (what, acct, c, r.choice(["buy", "sell"]), r.randint(97, 103), qty, f)
    live = r.randrange(8) if r.random() < 0.7 else None  # of the account's orders not done when it is sent, this one (if it has any)
    if what == "cancel": return (what, acct, c, live)
    if what == "cancel_all": return (what, acct)
    if what == "modify":
        px, qty, stop = r.choice([None, r.randint(97, 103)]), r.choice([None, r.randint(1, 11)]), r.choice([None, None, r.randint(95, 105)])
        return (what, acct, c, px, qty if qty or px or stop else 1, stop, live)
    return (what,)

def streams(step, min_size):
    """Lists of `step(rng)`, an rng seeded by the example's seed and the step's: shrunk by dropping steps; the example's seed varies
    steps that hypothesis's draws alone repeat often (one seed a step made some 264 distinct steps in 100 examples of ~17)."""
    return st.tuples(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), min_size=min_size, max_size=int(os.environ.get("STEPS", 80)))).map(
        lambda t: [step(random.Random(t[0] << 32 | seed)) for seed in t[1]])

steps = streams(_step, 10)

class Run:
    "A market and the model, driven together, compared after each flush."
    def __init__(self, folder, snapshot_every, keep_done=10_000, limits=LIMITS):
        self.folder, self.snapshot_every, self.keep_done, self.limits = folder, snapshot_every, keep_done, limits
        self.model, self.calls = Model(keep_done, limits), []
        self.open()

    def open(self): self.m = Market(self.folder, [dict(symbol=SYMBOL, price_band_pct=0)], "never", self.limits, snapshot_every=self.snapshot_every,
                               keep_done=self.keep_done)

    def call(self, step):
        "One call to the market and the model; what the model expects of it (raised at once, replies later)."
        m, model, what = self.m, self.model, step[0]
        if what in ("cancel", "modify") and step[-1] is not None:  # aimed at an order not done, if the account has one
            if mine := [o["cid"] for oid, o in sorted(model.orders.items()) if o["account"] == step[1] and o["status"] not in DONE]:
                step = (*step[:2], mine[step[-1] % len(mine)], *step[3:])
        got, want = [], []
        reply = lambda ok, state, error: got.append((ok, Conflict if isinstance(error, Conflict) else error and error.split(":")[0],
                                                     (state["order_id"], state["status"], state["filled"], state["remaining"])))
        try:
            if what == "submit":
                _, acct, c, sd, px, qty, f = step
                f = dict(f, cid=c, symbol=SYMBOL, side=sd, qty=qty) | ({"price": px} if f["kind"] in ("limit", "stop_limit") else {})
                expect = model.submit(acct, f, want.append)  # True: a new order, False: an answer, or what it raises
                new = m.submit(acct, Order(**f), reply); raised = None
                assert new == expect, f"{step}: new {new}, the model {expect}"
            elif what == "cancel":
                expect = model.cancel(step[1], step[2], want.append)
                m.cancel(step[1], Cancel(cid=step[2]), reply); raised = None
            elif what == "modify":
                expect = model.modify(step[1], step[2], step[3], step[4], step[5], want.append)
                m.modify(step[1], Modify(cid=step[2], price=step[3], qty=step[4], stop_price=step[5]), reply); raised = None
        except (Conflict, NotFound, ValidationError) as e: raised = type(e)
        assert raised is (expect if isinstance(expect, type) else None), f"{step}: raised {raised}, the model {expect}"
        self.calls.append((step, got, want))

    def do(self, step):
        what = step[0]
        if what in ("submit", "cancel", "modify"): return self.call(step)
        if what == "cancel_all":
            done = []
            states = self.m.cancel_all(step[1], done=lambda states, failed: done.append(failed))
            assert [s["cid"] for s in states] == self.model.cancel_all(step[1]), step
            self.calls.append((step, done, [{}] if states else []))  # `done` is called once every cancel is answered, none failing
            if not states: assert done == [{}]; done.clear()
            return
        if what == "flush":
            while self.m.pending: self.m.flush()
            self.model.flush()
            return self.check()
        if what == "restart":
            self.m.close(); self.model.flush()  # close sends what waits
            self.check(); before = saved(self.m)
            self.open()
            after = saved(self.m)
            for k in before: assert before[k] == after[k], f"after reopening, {k} differ: {before[k]} != {after[k]}"
            return self.check()

    def check(self):
        m, model = self.m, self.model
        for step, got, want in self.calls: assert got == want, f"{step}: replied {got}, the model {want}"
        self.calls = []
        ours = {oid: {k: o[k] for k in FIELDS} for oid, o in model.orders.items()}
        theirs = {oid: {k: o[k] for k in FIELDS} for oid, o in m.ledger.orders.items()}
        for oid in ours.keys() | theirs.keys(): assert theirs.get(oid) == ours.get(oid), f"order {oid}: {theirs.get(oid)} != the model's {ours.get(oid)}"
        assert dict(m.cids.ids) == model.cids and m.cids.next_id == model.next_id
        check_open_orders(m.ledger)
        for (acct, c), oid in model.cids.items(): assert m.order(acct, c)["order_id"] == oid
        book = m.engine.book(SYMBOL)
        assert book.depth(1000) == model.book.depth(1000) and book.last_price == model.book.last, (book.depth(1000), model.book.depth(1000))
        q = book.queues()
        for s, name in ((BUY, "bids"), (SELL, "asks")):
            want = [(p, [(o.id, o.visible, o.remaining) for o in qu]) for p, qu in sorted(model.book.levels[s].items(), reverse=s == BUY)]
            assert q[name] == want, f"{name}: {q[name]} != {want}"
        open_ = {acct: {o.id: (model.orders[o.id]["cid"], ("buy", "sell")[o.side], model.orders[o.id]["price"], o.remaining) for o in model.book.orders.values() if o.user == acct} for acct in ACCOUNTS}
        for acct in ACCOUNTS:
            mine = {oid: (s["cid"], s["side"], s["price"], s["remaining"]) for oid, s in m.ledger.accounts.get(acct, {}).items() if s["status"] == "open"}
            assert mine == open_[acct], f"account {acct}: open {mine} != {open_[acct]}"
            assert m.engine.open_orders.get(acct, 0) == len(open_[acct]), (acct, m.engine.open_orders)
            p, want = m.engine.position(acct, SYMBOL), model.pos.get(acct, [0, 0, 0, 0])
            assert p.qty == want[0] and p.realized - p.avg_price * p.qty == model.cash[acct], (acct, p, want, model.cash[acct])
            assert abs(p.realized - want[2]) <= Fraction(want[3], 2 * SCALE), f"account {acct}: realized {p.realized} != {want[2]} ({want[3]} closes)"
            assert abs(p.avg_price * abs(p.qty) - want[1]) <= Fraction(want[3], 2 * SCALE), f"account {acct}: cost {p.cost} != {want[1]}"
        assert {oid for _, oid in m.engine.live} == set(model.book.orders)
        fills = {a: [(f["fill_id"], f["order_id"], f["cid"], f["side"], f["price"], f["qty"]) for f in fs] for a, fs in m.ledger.fills.items() if fs}
        assert fills == model.fills, f"fills {fills} != the model's {model.fills}"

def saved(m) -> dict:
    "What a reopen must keep, all of it."
    return dict(orders={oid: {k: v for k, v in s.items()} for oid, s in m.ledger.orders.items()}, cids=dict(m.cids.ids), next_id=m.cids.next_id,
                queues=m.engine.book(SYMBOL).queues(), last=m.engine.book(SYMBOL).last_price,
                positions={k: (p.qty, p.cost_m, p.realized_m) for k, p in m.engine.positions.items() if (p.qty, p.cost_m, p.realized_m) != (0, 0, 0)},
                live=dict(m.engine.live), open_orders={u: n for u, n in m.engine.open_orders.items() if n},
                fills={a: list(f) for a, f in m.ledger.fills.items()}, tape=list(m.tape[SYMBOL]))

def drive(steps_, snapshot_every, keep_done=10_000, limits=LIMITS):
    with tempfile.TemporaryDirectory() as folder:
        run = Run(Path(folder)/"market", snapshot_every, keep_done, limits)
        try:
            for step in steps_: run.do(step)
            run.do(("restart",))
        finally:
            try: run.m.close()
            except Exception: pass  # closed already, by a restart that failed

N = int(os.environ.get("EXAMPLES", 30))  # more for a longer search (EXAMPLES=2000 STEPS=200): make test stays short

@settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps, st.sampled_from([2, 5, 100_000]))
def test_the_market_matches_the_model(steps_, snapshot_every):
    "Streams of 10 to 80 steps; every done order kept."
    drive(steps_, snapshot_every, keep_done=10_000)

@settings(max_examples=N // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps, st.sampled_from([2, 5, 100_000]))
def test_the_market_matches_the_model_keeping_three_done_orders(steps_, snapshot_every):
    """Each account keeps its 3 newest done orders: an older one's cid names a new order again, before and after a restart.
    No risk limit refuses anything here: see `test_a_restart_forgets_the_done_orders_it_forgot_before`."""
    drive(steps_, snapshot_every, keep_done=3, limits=NO_RISK)

def test_a_restart_forgets_the_done_orders_it_forgot_before():
    """Account 1's A ends (cancelled) in a batch's first part, its R (refused: qty past max_order_qty) in the second; 1 done order kept.
    Before: A was forgotten until a restart, R after it (the ledger file told of R's end first), so R's cid named a second order."""
    drive([("submit", 1, "A", "buy", 97, 1, dict(kind="limit", tif="GTC")), ("flush",),
           ("cancel", 1, "A", None),
           ("submit", 2, "X", "buy", 97, 1, dict(kind="limit", tif="GTC")), ("cancel", 2, "X", None),  # names X again: a second part
           ("submit", 1, "R", "buy", 97, 11, dict(kind="limit", tif="GTC")), ("flush",)], 100_000, keep_done=1)

# == several symbols in one market: ticks, lots and price bands per symbol, halts and symbols added mid-stream
#
# The model states the symbols' rules itself (13_market: "Each symbol has its rules", "Orders in", the band's paragraphs):
# - a price on the symbol's ticks and a qty (and display_qty) on its lots, else ValidationError at once;
# - with a band of p% (p > 0): a limit price within p% of the last trade (none before the first), a stop-limit's limit within
#   p% of its stop price, else ValidationError at once; the band's edges are the farthest prices on the ticks within it;
# - a market order reaches the book as an IOC limit at the band's far edge (a FOK one as FOK), around the last trade as it is
#   queued, or before the first the best price it would take; while there is nothing to take it is protected in its batch, around
#   what the orders before it left (a part of its own), and with nothing then either, sent as it is; a stop order as a stop-limit at the edge around its stop price; what such an
#   order cannot fill is cancelled as `no_liquidity_in_band`; with no band, a buy stop as a stop-limit IOC at the highest price
#   its qty may pay within `max_notional` (not with the engine's own band on), its rest cancelled as `no_liquidity_within_max_notional`;
# - the engine's own band (`RiskLimits.price_band_pct`, one for every symbol): a limit price (a modify's new one too) within it
#   around the last trade before the batch part, a stop-limit's around its stop, else refused as `risk_price_band`;
# - halted: new orders and modifies refused with a Conflict at once, cancels pass; those queued before the halt are refused in
#   their batch with a Conflict (a new order rejected, its reason `HALTED`), cancels and repeated ids still answered; a halt, and a symbol added, survive a restart;
# - open orders are counted per account over all symbols; positions and fills per symbol; cancel_all with or without a symbol, no second
#   cancel of an order with one queued;
# - a flush sends each symbol's commands as a batch, the symbols in the order their first command was queued.

SYMS = {"AAA": (1, 1, 100), "BBB": (5, 2, 500), "CCC": (2, 1, 50)}  # symbol: tick, lot, a price near which its stream trades
FIRST = ("AAA", "BBB")  # traded from the start; CCC added mid-stream
M_CIDS = tuple("abcdef")

def edges(pct, tick, around) -> tuple:
    "The band's lowest and highest prices on the ticks: within `pct` percent of `around`, exactly; at least a tick, at most `MAX_PRICE`."
    P = Fraction(str(pct))
    lo, hi = around * (100 - P) / 100, around * (100 + P) / 100
    return int(max(tick, -(-lo // tick) * tick)), int(min(hi, MAX_PRICE) // tick * tick)

def outside(pct, around, price) -> bool:
    "The engine's band: `price` farther than `pct` percent from `around`."
    return bool(pct) and around is not None and price is not None and abs(price - around) * 100 > Fraction(str(pct)) * around

class MModel(Model):
    "Several symbols: a `ReferenceBook` each; the symbols' rules, the market's batches and the accounts here (`live`, `fill` and `event` as `Model`'s, positions by (account, symbol))."
    def __init__(self, bands, limits, keep_done=10_000):
        self.bands, self.limits, self.specs, self.books, self.keep_done = bands, limits, {}, {}, keep_done
        self.ended, self.refused, self.others = {}, [], []  # as `Model`'s: the ledger file tells first of a batch's refusals, then of its other ends
        for s in FIRST: self.add(s)
        self.orders, self.cids, self.next_id, self.pending = {}, {}, 1, []
        self.pos, self.cash, self.fills = {}, Counter(), {}  # (account, symbol) -> [qty, cost, realized, closes]; account -> fills
        self.moving = {}
        self.batches, self.cancelling_all = 0, {}  # as `Model`'s

    def add(self, symbol):
        if symbol in self.specs: return Conflict
        tick, lot, _ = SYMS[symbol]
        self.specs[symbol], self.books[symbol] = dict(tick=tick, lot=lot, band=self.bands[symbol], halted=False), ReferenceBook(tick)

    def halt(self, symbol, halted):
        if symbol not in self.specs: return NotFound
        self.specs[symbol]["halted"] = halted

    def reference(self, symbol, side):
        "A market order's band is around the last trade, or before the first the best price it would take (None: nothing to take, cancelled as `no_liquidity`)."
        book = self.books[symbol]
        if (best := book.best(SELL if side == "buy" else BUY)) is None: return None
        return book.last if book.last is not None else best

    def protect(self, o):
        "A market (stop) order as the book gets it in a banded symbol: an IOC (FOK) limit (stop-limit) at the band's far edge."
        spec = self.specs[o["symbol"]]
        if not spec["band"] and (row := capped(o, self.limits, spec["tick"])): o["row"] = dict(zip(("kind", "tif", "price"), row), unbanded=False)
        if not spec["band"] or o["kind"] not in ("market", "stop"): return
        around = o["stop_price"] if o["kind"] == "stop" else self.reference(o["symbol"], o["side"])
        if around is None: o["row"] = dict(kind="market", tif=o["tif"], price=None, unbanded=True); return
        lo, hi = edges(spec["band"], spec["tick"], around)
        o["row"] = dict(kind="stop_limit" if o["kind"] == "stop" else "limit", tif="IOC" if o["tif"] == "GTC" else o["tif"],
                        price=hi if o["side"] == "buy" else lo, unbanded=False)

    def submit(self, account, f, expect):
        symbol = f["symbol"]
        if (oid := self.cids.get((account, f["cid"]))) is not None:  # answered whatever else it says, its symbol too
            if self.orders[oid]["status"] == "new": self.pending.append(dict(op="answer", oid=oid, o=self.orders[oid], expect=expect))
            else: expect(self.answer(oid))
            return False
        if symbol not in self.specs: return NotFound
        spec, book = self.specs[symbol], self.books[symbol]
        if spec["halted"]: return Conflict
        price, stop, last = f.get("price"), f.get("stop_price"), book.last
        if price is not None:
            if price % spec["tick"]: return ValidationError
            around = stop if stop is not None else last
            if spec["band"] and around is not None and not edges(spec["band"], spec["tick"], around)[0] <= price <= edges(spec["band"], spec["tick"], around)[1]:
                return ValidationError
        if stop is not None and stop % spec["tick"]: return ValidationError
        if stop is not None and last is not None and (stop <= last if f["side"] == "buy" else stop >= last): return ValidationError
        if f["qty"] % spec["lot"] or f.get("display_qty") and f["display_qty"] % spec["lot"]: return ValidationError
        oid, self.next_id = self.next_id, self.next_id + 1
        self.cids[account, f["cid"]] = oid
        o = self.orders[oid] = dict(order_id=oid, account=account, cid=f["cid"], symbol=symbol, side=f["side"], kind=f["kind"], tif=f["tif"],
                                    price=price, qty=f["qty"], remaining=f["qty"], filled=0, notional=0, status="new", reason="",
                                    stp=f.get("stp", "none"), post=f.get("post_only", False), display=f.get("display_qty"), stop_price=stop)
        o["row"] = dict(kind=o["kind"], tif=o["tif"], price=price, unbanded=False)
        self.protect(o)
        self.pending.append(dict(op="submit", oid=oid, o=o, expect=expect))
        return True

    def cancel(self, account, cid, expect):
        if not isinstance(oid := self.live(account, cid), int): return oid
        self.pending.append(dict(op="cancel", oid=oid, o=self.orders[oid], expect=expect))

    def modify(self, account, cid, price, qty, stop, expect):
        if not isinstance(oid := self.live(account, cid), int): return oid
        o = self.orders[oid]
        spec, book = self.specs[o["symbol"]], self.books[o["symbol"]]
        if spec["halted"]: return Conflict
        if price is not None and o["kind"] in ("market", "stop"): return ValidationError
        waiting = o["stop_price"] is not None and (o["status"] == "new" or book.orders[oid].stop_waiting)
        if stop is not None and not waiting: return ValidationError if o["stop_price"] is None else Conflict  # none, or triggered
        if waiting and any(p["op"] == "modify" and p["oid"] == oid for p in self.pending): return Conflict  # one modify of a stop a batch
        if stop is not None and stop % spec["tick"] or reached(stop, o["side"], book.last): return ValidationError
        around = (stop or o["stop_price"]) if waiting else book.last  # a stop-limit's limit: banded around its stop, its old one too when it moves
        checked = o["price"] if stop is not None and price is None and o["kind"] == "stop_limit" else price
        if checked is not None:
            if checked % spec["tick"]: return ValidationError
            if spec["band"] and around is not None and not edges(spec["band"], spec["tick"], around)[0] <= checked <= edges(spec["band"], spec["tick"], around)[1]:
                return ValidationError
        if qty is not None and qty % spec["lot"]: return ValidationError
        if waiting and o["kind"] == "stop" and not (stop is None and (qty or 0) <= o["remaining"]) and (sent := self.sent(o)):  # its limit moves along: the band's edge around its stop, or its cap (not with a lower qty alone)
            stop_ = stop or o["stop_price"]
            limit = (edges(spec["band"], spec["tick"], stop_)[o["side"] == "buy"] if spec["band"] else
                     max(min(self.limits.max_notional // (qty or o["remaining"]), MAX_PRICE) // spec["tick"] * spec["tick"], stop_))
            if limit != sent: price = limit
        self.pending.append(dict(op="modify", oid=oid, o=o, price=price, qty=qty, stop=stop, expect=expect))

    def sent(self, o) -> int:
        if (held := self.books[o["symbol"]].orders.get(o["order_id"])) is not None: return held.price
        return o["row"]["price"] or 0

    def cancel_all(self, account, symbol=None):
        if symbol is not None and symbol not in self.specs: return NotFound
        oids = [oid for oid, o in sorted(self.orders.items()) if o["account"] == account and o["status"] not in DONE and symbol in (None, o["symbol"])]
        cids, self.cancels = cancel_all_requests(self, account, symbol, oids)  # what its answer waits for
        return cids

    def answer(self, oid, o=None):
        "A reply, as `Model.answer`'s, of the order `oid` (or `o`, forgotten since); an order refused by a halt is answered as it was first: a Conflict."
        o = o or self.orders[oid]
        why = o["reason"] if o["status"] in ("rejected", "lost") else None
        return (why is None, Conflict if why == HALTED.format(o["symbol"]) else why, told(o))

    def flush(self, most=None):
        "One batch: the first `most` commands queued (all by default), the rest left for the next."
        by_symbol, batch, self.pending = {}, self.pending[:most], self.pending[most:] if most else []
        self.batches += bool(batch)
        for r in batch: by_symbol.setdefault(r["o"]["symbol"], []).append(r)
        for symbol, part in by_symbol.items():  # halted since queued: its new orders and modifies refused, the rest sent
            if not self.specs[symbol]["halted"]: continue
            kept = []
            for r in part:
                if r["op"] in ("answer", "cancel"): kept.append(r); continue
                o = r["o"]
                if r["op"] == "submit": o.update(status="rejected", reason=HALTED.format(symbol), remaining=0); self.refused.append(o)  # written first
                r["expect"]((False, Conflict, told(o)))  # a Conflict, as when halted before it was sent; a new order's reason HALTED
            by_symbol[symbol] = kept
        for symbol, requests in by_symbol.items():
            parts, named, moved = [[]], set(), False
            for r in requests:  # cut where a command names an order named before in its part, before a market order still unprotected, before a market buy of a symbol with no band, and after a stop's modify
                alone = r["op"] == "submit" and (r["o"]["row"]["unbanded"] or r["o"]["row"]["kind"] == "market" and r["o"]["side"] == "buy")
                if r["op"] != "answer" and (r["oid"] in named or alone or moved) and parts[-1]: parts.append([]); named = set()
                parts[-1].append(r); named.add(r["oid"])
                if r["op"] != "answer": moved = r["op"] == "modify" and r["o"]["stop_price"] is not None
            for part in parts:
                if part and part[0]["op"] == "submit" and (o := part[0]["o"])["row"]["unbanded"]: self.protect(o)
                self.run(symbol, part)
        for o in self.refused + self.others: self.ended.setdefault(o["account"], []).append(o["order_id"])
        self.refused, self.others = [], []
        Model.retire(self)

    def run(self, symbol, part):
        "As `Model.run`, in `symbol`'s book: its band checked too, open orders counted over every symbol."
        book, limits, refused, rows = self.books[symbol], self.limits, {}, []
        last = book.last
        def send():
            fields = COMMAND_DTYPE.names
            for e in book.process(np.array([tuple(c.get(f, 0) for f in fields) for c in rows], COMMAND_DTYPE)): self.event(e, refused, symbol)
            rows.clear()
            self.moving.clear()
            live = {oid: o.user for b in self.books.values() for oid, o in b.orders.items()}
            return live, Counter(live.values()), Counter(), set(), Cuts(book, limits)
        live, count, more, freed, cuts = send()
        for r in part:
            o = r["o"]
            user = o["account"]
            if r["op"] == "cancel":
                if r["oid"] in book.orders and live.get(r["oid"]) == user and r["oid"] not in freed: freed.add(r["oid"]); more[user] -= 1
                rows.append(dict(op=OP_CANCEL, order_id=r["oid"], user=user))
            elif r["op"] == "modify":
                if r["qty"] is not None and r["qty"] > limits.max_order_qty: refused[r["oid"]] = "risk_max_order_qty"; continue
                held = book.orders.get(r["oid"])
                stop = r["stop"] or (held.stop if held is not None and held.stop_waiting else None)  # a stop-limit's limit: banded around its stop
                banded = r["price"] or (held.price if r["stop"] and held is not None else None) or None  # a stop moved alone: its limit, around it
                if outside(limits.price_band_pct, stop or last, banded): refused[r["oid"]] = "risk_price_band"; continue
                row = dict(op=OP_MODIFY, order_id=r["oid"], user=user, price=r["price"] or 0, qty=r["qty"] or 0, stop_price=r["stop"] or 0)
                if rows and cuts.due(row): live, count, more, freed, cuts = send()
                cuts.passed(row)
                rows.append(row)
                if r["stop"]: self.moving[r["oid"]] = r["stop"]
            elif r["op"] == "submit":
                spec = o["row"]
                rests = spec["kind"] in ("stop", "stop_limit") or spec["kind"] == "limit" and spec["tif"] == "GTC"
                why = lambda: ("risk_max_order_qty" if o["qty"] > limits.max_order_qty else
                               "risk_price_band" if spec["kind"] in ("limit", "stop_limit") and outside(limits.price_band_pct, o["stop_price"] if spec["kind"] == "stop_limit" else last, spec["price"]) else
                               "risk_max_open_orders" if rests and count[user] + more[user] >= limits.max_open_orders else None)
                row = dict(op=OP_SUBMIT, order_id=r["oid"], user=user, side=("buy", "sell").index(o["side"]), kind=KINDS.index(spec["kind"]),
                           tif=("GTC", "IOC", "FOK").index(spec["tif"]), price=spec["price"] or 0, stop_price=o["stop_price"] or 0, qty=o["qty"],
                           display_qty=o["display"] or 0, post_only=int(o["post"]), stp=STPS.index(o["stp"]))
                if not why() and rows and cuts.due(row): live, count, more, freed, cuts = send()
                if reason := why(): o.update(status="rejected", reason=reason, remaining=0); self.refused.append(o); continue
                if rests: more[user] += 1
                cuts.passed(row)
                rows.append(row)
        if rows: send()
        for r in part:
            if r["expect"] is None: continue
            o = r["o"]
            if r["op"] in ("submit", "answer"): r["expect"](self.answer(r["oid"], o))
            elif (why := refused.get(r["oid"])) == "unknown_id" and o["status"] in DONE or why == "invalid_combination" and r.get("stop"):
                r["expect"]((False, Conflict, told(o)))  # done, or a stop triggered, earlier in the batch: as if it came after
            else: r["expect"]((why is None, why, told(o)))

    def position(self, account, symbol): return account, symbol  # by symbol too
    def rest(self, symbol): return "no_liquidity_in_band" if self.specs[symbol]["band"] else "no_liquidity_within_max_notional"


def _m_price(r, symbol, d=None):
    "A price near the symbol's, on its ticks (now and then one off them)."
    tick, _, base = SYMS[symbol]
    return base + tick * (r.randint(-3, 3) if d is None else d) + (1 if tick > 1 and r.random() < 0.05 else 0)

def _m_step(r: random.Random) -> tuple:
    what = r.choices(["submit", "cancel", "modify", "flush", "flush1", "cancel_all", "restart", "halt", "resume", "add"],
                     [12, 2, 2, 2, 1.5, 0.6, 0.5, 0.5, 0.7, 0.4])[0]
    acct, c, sym = r.choice(ACCOUNTS), r.choice(M_CIDS), r.choices(list(SYMS), [5, 5, 2])[0]
    if what == "submit":
        kind, tif = r.choices(["limit", "market", "stop", "stop_limit"], [14, 4, 2, 2])[0], r.choices(["GTC", "IOC", "FOK"], [6, 1, 1])[0]
        f = dict(kind=kind, tif=tif)
        if kind in ("stop", "stop_limit"): f["stop_price"] = _m_price(r, sym)
        if kind in ("limit", "stop_limit"): f["price"] = _m_price(r, sym, r.randint(-3, 3) + (f.get("stop_price", SYMS[sym][2]) - SYMS[sym][2]) // SYMS[sym][0] * (kind == "stop_limit"))
        if r.random() < 0.15: f["stp"] = r.choice(STPS[1:])
        if kind == "limit" and tif == "GTC" and r.random() < 0.1: f["post_only"] = True
        lot = SYMS[sym][1]
        qty = lot * r.randint(1, 5) + (r.random() < 0.05 and lot > 1)  # now and then off its lots
        if r.random() < 0.05: qty = 11  # past max_order_qty
        if kind in ("limit", "stop_limit") and tif == "GTC" and r.random() < 0.1: f["display_qty"] = min(qty, lot * r.randint(1, 2))
        return (what, acct, c, sym, r.choice(["buy", "sell"]), qty, f)
    live = r.randrange(8) if r.random() < 0.7 else None
    if what == "cancel": return (what, acct, c, live)
    if what == "cancel_all": return (what, acct, r.choice([None, sym]))
    if what == "modify":
        d, k, s = r.choice([None, r.randint(-3, 3)]), r.choice([None, r.randint(1, 5)]), r.choice([None, None, r.randint(-4, 4)])
        return (what, acct, c, d, k if k or d is not None or s is not None else 1, r.random() < 0.05, s, live)
    if what in ("halt", "resume", "add"): return (what, sym)
    return (what,)

m_streams = streams(_m_step, 20)

class MRun:
    "A market of several symbols and the model, driven together, compared after each flush."
    def __init__(self, folder, snapshot_every, bands, limits, keep_done=10_000):
        self.folder, self.snapshot_every, self.bands, self.limits, self.keep_done = folder, snapshot_every, bands, limits, keep_done
        self.model, self.calls = MModel(bands, limits, keep_done), []
        self.open()

    def spec(self, s): return dict(symbol=s, tick_size=SYMS[s][0], lot_size=SYMS[s][1], price_band_pct=self.bands[s])

    def open(self): self.m = Market(self.folder, [self.spec(s) for s in FIRST], "never", self.limits, snapshot_every=self.snapshot_every,
                               keep_done=self.keep_done)

    def call(self, step):
        m, model, what = self.m, self.model, step[0]
        if what in ("cancel", "modify") and step[-1] is not None:
            if mine := [o["cid"] for oid, o in sorted(model.orders.items()) if o["account"] == step[1] and o["status"] not in DONE]:
                step = (*step[:2], mine[step[-1] % len(mine)], *step[3:])
        got, want = [], []
        norm = lambda e: e.split(":")[0] if isinstance(e, str) else e
        expect_ = lambda t: want.append((t[0], norm(t[1]), t[2]))
        reply = lambda ok, state, error: got.append((ok, Conflict if isinstance(error, Conflict) else norm(error),
                                                     (state["order_id"], state["status"], state["filled"], state["remaining"])))
        try:
            if what == "submit":
                _, acct, c, sym, sd, qty, f = step
                f = dict(f, cid=c, symbol=sym, side=sd, qty=qty)
                expect = model.submit(acct, f, expect_)
                plain = plain_order(f) if acct == 2 else None  # account 2's plain limit and market orders as the service's fast path reads them
                new = m.submit(acct, plain or Order(**f), reply); raised = None
                assert new == expect, f"{step}: new {new}, the model {expect}"
            elif what == "cancel":
                expect = model.cancel(step[1], step[2], expect_)
                m.cancel(step[1], Cancel(cid=step[2]), reply); raised = None
            elif what == "modify":
                _, acct, c, d, k, off, s, _ = step
                oid = model.cids.get((acct, c))
                sym = model.orders[oid]["symbol"] if oid in model.orders else "AAA"
                tick, lot, base = SYMS[sym]
                px = None if d is None else base + tick * d + (1 if off and tick > 1 else 0)
                qty = None if k is None else lot * k + (1 if off and lot > 1 else 0)
                stop = None if s is None else base + tick * s + (1 if off and tick > 1 else 0)
                expect = model.modify(acct, c, px, qty, stop, expect_)
                m.modify(acct, Modify(cid=c, price=px, qty=qty, stop_price=stop), reply); raised = None
                step = (*step, px, qty, stop)
        except (Conflict, NotFound, ValidationError) as e: raised = type(e)
        assert raised is (expect if isinstance(expect, type) else None), f"{step}: raised {raised}, the model {expect}"
        self.calls.append((step, got, want))

    def do(self, step):
        what, m, model = step[0], self.m, self.model
        if what in ("submit", "cancel", "modify"): return self.call(step)
        if what in ("halt", "resume", "add"):
            try:
                if what == "add": m.add_symbol(SymbolSpec(**self.spec(step[1])))
                else: m.halt(step[1], what == "halt")
                raised = None
            except (Conflict, NotFound) as e: raised = type(e)
            want = model.add(step[1]) if what == "add" else model.halt(step[1], what == "halt")
            assert raised is want, f"{step}: raised {raised}, the model {want}"
            return
        if what == "cancel_all":
            done = []
            try: states = m.cancel_all(step[1], step[2], done=lambda states, failed: done.append(failed)); raised = None
            except NotFound: raised = NotFound
            want = model.cancel_all(step[1], step[2])
            if raised or want is NotFound: assert raised is want, f"{step}: raised {raised}, the model {want}"; return
            assert [s["cid"] for s in states] == want, (step, [s["cid"] for s in states], want)
            self.calls.append((step, done, [{}] if states else [], model.cancels))  # the cancels it waits for
            if not states: assert done == [{}]; done.clear()
            return
        if what == "flush":
            while m.pending: m.flush()
            while model.pending: model.flush(market_module.MAX_BATCH)
            return self.check()
        if what == "flush1":  # one batch of at most `MAX_BATCH` commands: the rest wait in flight (a halt before the next refuses them)
            m.flush(); model.flush(market_module.MAX_BATCH)
            return self.check()
        if what == "restart":
            m.close()  # sends what waits, `MAX_BATCH` at a time
            while model.pending: model.flush(market_module.MAX_BATCH)
            self.check(); before = m_saved(m)
            self.open()
            after = m_saved(self.m)
            for k in before: assert before[k] == after[k], f"after reopening, {k} differ: {before[k]} != {after[k]}"
            return self.check()

    def check(self):
        m, model = self.m, self.model
        waiting = lambda c: c[0][0] == "cancel_all" and any(r is p for r in c[3] for p in self.model.pending)  # `done` once every cancel is answered
        for step, got, want, *_ in [c for c in self.calls if not waiting(c)]: assert got == want, f"{step}: replied {got}, the model {want}"
        self.calls = [c for c in self.calls if waiting(c) or not c[1] and c[0][0] != "cancel_all"]  # those not answered yet: compared later
        assert {s: sp.halted for s, sp in m.specs.items()} == {s: sp["halted"] for s, sp in model.specs.items()}
        assert {s: (sp.tick_size, sp.lot_size, sp.price_band_pct) for s, sp in m.specs.items()} == {s: (sp["tick"], sp["lot"], sp["band"]) for s, sp in model.specs.items()}
        ours = {oid: {k: o[k] for k in FIELDS} for oid, o in model.orders.items()}
        theirs = {oid: {k: o[k] for k in FIELDS} for oid, o in m.ledger.orders.items()}
        for oid in ours.keys() | theirs.keys(): assert theirs.get(oid) == ours.get(oid), f"order {oid}: {theirs.get(oid)} != the model's {ours.get(oid)}"
        assert dict(m.cids.ids) == model.cids and m.cids.next_id == model.next_id
        check_open_orders(m.ledger)
        for sym, mb in model.books.items():
            book = m.engine.book(sym)
            assert book.depth(1000) == mb.depth(1000) and book.last_price == mb.last, (sym, book.depth(1000), mb.depth(1000), book.last_price, mb.last)
            q = book.queues()
            for s, name in ((BUY, "bids"), (SELL, "asks")):
                want = [(p, [(o.id, o.visible, o.remaining) for o in qu]) for p, qu in sorted(mb.levels[s].items(), reverse=s == BUY)]
                assert q[name] == want, f"{sym} {name}: {q[name]} != {want}"
        for acct in ACCOUNTS:
            open_ = {o.id: (model.orders[o.id]["cid"], ("buy", "sell")[o.side], model.orders[o.id]["price"], o.remaining) for b in model.books.values() for o in b.orders.values() if o.user == acct}
            mine = {oid: (s["cid"], s["side"], s["price"], s["remaining"]) for oid, s in m.ledger.accounts.get(acct, {}).items() if s["status"] == "open"}
            assert mine == open_, f"account {acct}: open {mine} != {open_}"
            assert m.engine.open_orders.get(acct, 0) == len(open_), (acct, m.engine.open_orders)
            for sym in model.books:
                p, want = m.engine.position(acct, sym), model.pos.get((acct, sym), [0, 0, 0, 0])
                assert p.qty == want[0] and p.realized - p.avg_price * p.qty == model.cash[acct, sym], (acct, sym, p, want, model.cash[acct, sym])
                assert abs(p.realized - want[2]) <= Fraction(want[3], 2 * SCALE), f"account {acct} {sym}: realized {p.realized} != {want[2]}"
        assert set(m.engine.live) == {(s, oid) for s, b in model.books.items() for oid in b.orders}
        fills = {a: [(f["fill_id"], f["order_id"], f["cid"], f["side"], f["price"], f["qty"]) for f in fs] for a, fs in m.ledger.fills.items() if fs}
        assert fills == model.fills, f"fills {fills} != the model's {model.fills}"

def m_saved(m) -> dict:
    return dict(orders={oid: dict(s) for oid, s in m.ledger.orders.items()}, cids=dict(m.cids.ids), next_id=m.cids.next_id,
                specs={s: sp.model_dump() for s, sp in m.specs.items()},
                books={s: (m.engine.book(s).queues(), m.engine.book(s).last_price, list(m.tape[s])) for s in m.specs},
                positions={k: (p.qty, p.cost_m, p.realized_m) for k, p in m.engine.positions.items() if (p.qty, p.cost_m, p.realized_m) != (0, 0, 0)},
                live=dict(m.engine.live), open_orders={u: n for u, n in m.engine.open_orders.items() if n},
                fills={a: list(f) for a, f in m.ledger.fills.items()})

def m_drive(steps_, snapshot_every, bands, engine_band=0, max_batch=None, keep_done=10_000):
    was = market_module.MAX_BATCH
    if max_batch: market_module.MAX_BATCH = max_batch
    with tempfile.TemporaryDirectory() as folder:
        run = MRun(Path(folder)/"market", snapshot_every, bands, RiskLimits(max_order_qty=10, max_notional=10**12, price_band_pct=engine_band, max_open_orders=3), keep_done)
        try:
            for step in steps_: run.do(step)
            run.do(("restart",))
        finally:
            try: run.m.close()
            except Exception: pass
            market_module.MAX_BATCH = was

BANDS = st.fixed_dictionaries({"AAA": st.sampled_from([0, 2, 5]), "BBB": st.sampled_from([0, 1, 2]), "CCC": st.sampled_from([0, 5])})

@settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))
@given(m_streams, st.sampled_from([2, 5, 100_000]), BANDS)
def test_several_symbols_with_bands_and_halts_match_the_model(steps_, snapshot_every, bands):
    "Two symbols (a third added mid-stream) with their ticks, lots and bands; halts and resumes; restarts; the engine's band off."
    m_drive(steps_, snapshot_every, bands)

@settings(max_examples=N // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(m_streams, st.sampled_from([5, 100_000]), BANDS, st.sampled_from([2, 3]))
def test_several_symbols_with_the_engines_band_match_the_model(steps_, snapshot_every, bands, engine_band):
    "As above, with the engine's own band (one for every symbol) checking the limit prices that reach it."
    m_drive(steps_, snapshot_every, bands, engine_band)

@settings(max_examples=N // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(m_streams, st.sampled_from([5, 100_000]), BANDS, st.sampled_from([1, 2, 3]))
def test_several_symbols_with_batches_in_flight_match_the_model(steps_, snapshot_every, bands, max_batch):
    """`MAX_BATCH` of 1 to 3: a flush sends only the first commands, the rest wait in flight: a halt before the next flush refuses
    their new orders and modifies (`Market._halted`), a resume lets them through, a restart sends them all."""
    m_drive(steps_, snapshot_every, bands, max_batch=max_batch)

@settings(max_examples=N // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(m_streams, st.sampled_from([2, 5, 100_000]), BANDS, st.sampled_from([1, 3, 2048]))
def test_several_symbols_keeping_three_done_orders_match_the_model(steps_, snapshot_every, bands, max_batch):
    """Each account keeps its 3 newest done orders, over all symbols, forgotten in the order the ledger's file tells of their ends:
    a batch's refusals by a halt, then by a risk limit, then its other ends; before and after a restart."""
    m_drive(steps_, snapshot_every, bands, max_batch=max_batch, keep_done=3)

def test_a_cancel_in_flight_of_an_order_forgotten_meanwhile_says_it_was_done():
    """Account 1's A fills in one batch (MAX_BATCH 1: each command its own), its IOC C ends in the next, which forgets A (1 done order
    kept); A's cancel, queued while A was open, is sent in the third: answered as a cancel of a done order (a Conflict), as it is
    when A is still kept. Before: answered ok, with A's state filled."""
    limit = lambda px, tif="GTC": dict(kind="limit", tif=tif, price=px)
    m_drive([("submit", 1, "A", "AAA", "sell", 1, limit(100)), ("flush",),
             ("submit", 2, "B", "AAA", "buy", 1, limit(100)), ("submit", 1, "C", "AAA", "buy", 1, limit(90, "IOC")),
             ("cancel", 1, "A", None), ("flush",)], 100_000, dict(AAA=0, BBB=0, CCC=0), max_batch=1, keep_done=1)
