"""A reference order book written for clarity, not speed: sorted price levels of deques, plain Python objects.

The property tests drive the same command streams through it and through the compiled `aiplatform.trading.book`
and require identical events and depth. Its rules are the book's rules, stated once more in the plainest form.
"""
from collections import deque
from dataclasses import dataclass
from aiplatform.trading.book import (ACCEPTED, BUY, CANCELLED, FOK, GTC, LIMIT, MARKET, MAX_PRICE, MAX_QTY, OP_CANCEL,
                                     OP_MODIFY, OP_SUBMIT, REJECTED, SELL, STOP, STOP_LIMIT, STP_CANCEL_BOTH,
                                     STP_CANCEL_OLDEST, STP_NONE, TRADE, TRIGGERED, R_COMBINATION,
                                     R_DISPLAY, R_DUPLICATE, R_FOK, R_IOC, R_KIND, R_NO_LIQUIDITY, R_NONE,
                                     R_NOT_OWNER, R_OFF_TICK, R_OP, R_POST_ONLY, R_PRICE, R_QTY, R_SELF_TRADE, R_SIDE,
                                     R_STOP_PRICE, R_STOP_REACHED, R_STP, R_TIF, R_UNKNOWN, R_USER_CANCEL)

@dataclass
class Order:
    id: int
    user: int
    side: int
    price: int
    remaining: int
    visible: int
    display: int
    stp: int
    kind: int
    stop: int
    tif: int
    post: bool
    arrival: int
    stop_waiting: bool = False

class ReferenceBook:
    def __init__(self, tick_size=1):
        self.tick = tick_size
        self.levels = {BUY: {}, SELL: {}}  # side -> price -> deque of orders, resting
        self.stops = {BUY: {}, SELL: {}}  # side -> stop price -> deque of waiting stop orders
        self.orders = {}  # id -> live order
        self.seq, self.arrival, self.last = 0, 0, None
        self.high = self.low = None  # the highest and lowest trade prices since the command began (the last trade before it too)
        self.events = []

    # -- events
    def emit(self, kind, oid, maker=0, user=0, maker_user=0, price=0, qty=0, reason=R_NONE):
        self.seq += 1
        self.events.append((self.seq, kind, oid, maker, user, maker_user, price, qty, reason))

    # -- views
    def best(self, side):
        "Best resting price of `side`, or None."
        prices = self.levels[side]
        if not prices: return None
        return max(prices) if side == BUY else min(prices)

    def depth(self, levels=10):
        bids = sorted(self.levels[BUY].items(), reverse=True)[:levels]
        asks = sorted(self.levels[SELL].items())[:levels]
        total = lambda q: sum(o.visible for o in q)
        return {"bids": [(p, total(q)) for p, q in bids], "asks": [(p, total(q)) for p, q in asks]}

    # -- book edits
    def rest(self, o):
        o.visible = min(o.display, o.remaining) if o.display else o.remaining
        self.levels[o.side].setdefault(o.price, deque()).append(o)

    def unrest(self, o):
        q = self.levels[o.side][o.price]
        q.remove(o)
        if not q: del self.levels[o.side][o.price]

    def forget(self, o): del self.orders[o.id]

    def cancel_resting(self, o, reason):
        self.emit(CANCELLED, o.id, user=o.user, price=o.price, qty=o.remaining, reason=reason)
        self.unrest(o)
        self.forget(o)

    # -- matching
    def acceptable(self, taker, price):
        if taker.kind == MARKET: return True
        return price <= taker.price if taker.side == BUY else price >= taker.price

    def opposite_prices(self, taker):
        "Opposite resting prices the taker may trade at, best first."
        opp = 1 - taker.side
        prices = sorted(self.levels[opp], reverse=(opp == BUY))
        return [p for p in prices if self.acceptable(taker, p)]

    def fok_fillable(self, t):
        "1: `t` fills whole; 0: not enough there; -1: enough, but self-trade prevention would cancel it first."
        avail, met = 0, False
        for price in self.opposite_prices(t):
            hidden = 0
            for m in self.levels[1 - t.side][price]:
                if t.stp != STP_NONE and m.user == t.user:
                    met = met or t.stp != STP_CANCEL_OLDEST
                    continue
                avail += m.visible
                hidden += m.remaining - m.visible
                if avail >= t.remaining: return -1 if met else 1
            avail += hidden
            if avail >= t.remaining: return -1 if met else 1
        return 0

    def match(self, t):
        "Trade taker `t`; True when self-trade prevention cancelled it."
        opp = 1 - t.side
        while t.remaining > 0 and self.levels[opp]:
            price = self.best(opp)
            if not self.acceptable(t, price): break
            queue = self.levels[opp][price]
            m = queue[0]
            if t.stp != STP_NONE and m.user == t.user:
                if t.stp in (STP_CANCEL_OLDEST, STP_CANCEL_BOTH): self.cancel_resting(m, R_SELF_TRADE)
                if t.stp == STP_CANCEL_OLDEST: continue
                self.emit(CANCELLED, t.id, user=t.user, price=t.price, qty=t.remaining, reason=R_SELF_TRADE)
                return True
            q = min(t.remaining, m.visible)
            self.emit(TRADE, t.id, m.id, t.user, m.user, price, q)
            self.last = price
            self.high, self.low = max(self.high or price, price), min(self.low or price, price)
            t.remaining -= q
            m.remaining -= q
            m.visible -= q
            if m.visible == 0:
                queue.popleft()
                if m.remaining == 0:
                    self.forget(m)
                    if not queue: del self.levels[opp][price]
                else:  # iceberg: next slice at the back
                    m.visible = min(m.display, m.remaining)
                    queue.append(m)
        return False

    def execute(self, t):
        if t.tif == FOK and (fillable := self.fok_fillable(t)) < 1:  # nothing traded: the resting order met stays, whatever the stp
            self.emit(CANCELLED, t.id, user=t.user, price=t.price, qty=t.remaining, reason=R_FOK if fillable == 0 else R_SELF_TRADE)
            return self.forget(t)
        if self.match(t) or t.remaining == 0: return self.forget(t)
        if t.kind == MARKET or t.tif != GTC:
            reason = R_NO_LIQUIDITY if t.kind == MARKET else R_IOC
            self.emit(CANCELLED, t.id, user=t.user, price=t.price, qty=t.remaining, reason=reason)
            return self.forget(t)
        self.rest(t)

    def trigger_stops(self):
        while self.last is not None:
            due = []
            buys = [p for p in self.stops[BUY] if p <= self.high]
            if buys: due.append(self.stops[BUY][min(buys)][0])
            sells = [p for p in self.stops[SELL] if p >= self.low]
            if sells: due.append(self.stops[SELL][max(sells)][0])
            if not due: return
            o = min(due, key=lambda o: o.arrival)
            q = self.stops[o.side][o.stop]
            q.popleft()
            if not q: del self.stops[o.side][o.stop]
            o.stop_waiting = False
            self.emit(TRIGGERED, o.id, user=o.user, price=o.stop, qty=o.remaining)
            o.kind = MARKET if o.kind == STOP else LIMIT
            self.execute(o)

    # -- commands
    def check_submit(self, c):
        if c["side"] not in (BUY, SELL): return R_SIDE
        if not LIMIT <= c["kind"] <= STOP_LIMIT: return R_KIND
        if not GTC <= c["tif"] <= FOK: return R_TIF
        if not STP_NONE <= c["stp"] <= STP_CANCEL_BOTH: return R_STP
        if not 0 < c["qty"] <= MAX_QTY: return R_QTY
        if c["kind"] in (LIMIT, STOP_LIMIT):
            if not 0 < c["price"] <= MAX_PRICE: return R_PRICE
            if c["price"] % self.tick: return R_OFF_TICK
        if c["kind"] in (STOP, STOP_LIMIT):
            if not 0 < c["stop_price"] <= MAX_PRICE: return R_STOP_PRICE
            if c["stop_price"] % self.tick: return R_OFF_TICK
        if not 0 <= c["display_qty"] <= c["qty"]: return R_DISPLAY
        if c["post_only"] and (c["kind"] != LIMIT or c["tif"] != GTC): return R_COMBINATION
        if c["display_qty"] and (c["kind"] not in (LIMIT, STOP_LIMIT) or c["tif"] != GTC): return R_COMBINATION
        if c["order_id"] in self.orders: return R_DUPLICATE
        return R_NONE

    def crosses(self, side, price):
        best = self.best(1 - side)
        return best is not None and (best <= price if side == BUY else best >= price)

    def reject(self, c, reason):
        self.emit(REJECTED, c["order_id"], user=c["user"], price=c["price"], qty=c["qty"], reason=reason)

    def submit(self, c):
        reason = self.check_submit(c)
        if reason == R_NONE and c["post_only"] and self.crosses(c["side"], c["price"]): reason = R_POST_ONLY
        if reason == R_NONE and c["kind"] in (STOP, STOP_LIMIT) and self.last is not None and (
                c["stop_price"] <= self.last if c["side"] == BUY else c["stop_price"] >= self.last): reason = R_STOP_REACHED
        if reason: return self.reject(c, reason)
        kind = c["kind"]
        price = c["price"] if kind in (LIMIT, STOP_LIMIT) else 0
        o = Order(c["order_id"], c["user"], c["side"], price, c["qty"], 0, c["display_qty"], c["stp"], kind,
                  c["stop_price"], c["tif"], bool(c["post_only"]), self.arrival)
        self.arrival += 1
        self.orders[o.id] = o
        self.emit(ACCEPTED, o.id, user=o.user, price=price, qty=o.remaining)
        if kind in (STOP, STOP_LIMIT):
            o.stop_waiting = True
            self.stops[o.side].setdefault(o.stop, deque()).append(o)
        else: self.execute(o)

    def owned(self, c):
        o = self.orders.get(c["order_id"])
        if o is None: return self.reject(c, R_UNKNOWN)
        if o.user != c["user"]: return self.reject(c, R_NOT_OWNER)
        return o

    def cancel(self, c):
        o = self.owned(c)
        if o is None: return
        if o.stop_waiting:
            self.emit(CANCELLED, o.id, user=o.user, price=o.price, qty=o.remaining, reason=R_USER_CANCEL)
            q = self.stops[o.side][o.stop]
            q.remove(o)
            if not q: del self.stops[o.side][o.stop]
            return self.forget(o)
        self.cancel_resting(o, R_USER_CANCEL)

    def modify(self, c):
        o = self.owned(c)
        if o is None: return
        if o.stop_waiting: return self.modify_stop(o, c)
        price = c["price"] or o.price
        qty = c["qty"] or o.remaining
        if c["stop_price"]: return self.reject(c, R_COMBINATION)
        if not 0 < qty <= MAX_QTY: return self.reject(c, R_QTY)
        if not 0 < price <= MAX_PRICE: return self.reject(c, R_PRICE)
        if price % self.tick: return self.reject(c, R_OFF_TICK)
        if o.post and self.crosses(o.side, price): return self.reject(c, R_POST_ONLY)
        self.emit(ACCEPTED, o.id, user=o.user, price=price, qty=qty)
        if price == o.price and qty <= o.remaining:
            o.visible, o.remaining = min(o.visible, qty), qty
            return
        self.unrest(o)
        o.price, o.remaining = price, qty
        self.execute(o)

    def modify_stop(self, o, c):
        "A stop waiting for its trigger: a new stop price, limit (a stop-limit's) or qty; a smaller qty alone keeps its place, else to the back as if new."
        stop, price, qty = c["stop_price"] or o.stop, c["price"] or o.price, c["qty"] or o.remaining
        if not 0 < qty <= MAX_QTY: return self.reject(c, R_QTY)
        if o.kind == STOP and c["price"]: return self.reject(c, R_COMBINATION)
        if o.kind == STOP_LIMIT and not 0 < price <= MAX_PRICE: return self.reject(c, R_PRICE)
        if not 0 < stop <= MAX_PRICE: return self.reject(c, R_STOP_PRICE)
        if price % self.tick or stop % self.tick: return self.reject(c, R_OFF_TICK)
        if self.last is not None and (stop <= self.last if o.side == BUY else stop >= self.last): return self.reject(c, R_STOP_REACHED)
        self.emit(ACCEPTED, o.id, user=o.user, price=price, qty=qty)
        if (stop, price) == (o.stop, o.price) and qty <= o.remaining:
            o.remaining = qty
            return
        q = self.stops[o.side][o.stop]
        q.remove(o)
        if not q: del self.stops[o.side][o.stop]
        o.stop, o.price, o.remaining, o.arrival = stop, price, qty, self.arrival
        self.arrival += 1
        self.stops[o.side].setdefault(stop, deque()).append(o)

    def process(self, commands):
        "Apply `COMMAND_DTYPE` rows; returns the list of event tuples."
        start = len(self.events)
        for row in commands:
            c = {name: int(row[name]) for name in row.dtype.names}
            op, self.high, self.low = c["op"], self.last, self.last
            if op == OP_SUBMIT: self.submit(c)
            elif op == OP_CANCEL: self.cancel(c)
            elif op == OP_MODIFY: self.modify(c)
            else: self.reject(c, R_OP)
            self.trigger_stops()
        return self.events[start:]
