"""Matching-engine benchmark: our compiled book against nautilus-trader's and order-matching's books, same streams.

Run: `make bench`, or `.venv-peers/bin/python benchmarks/bench_matching.py` in a venv with the `bench` extra (its
peers need pandas 2, vectorbt 1.2 pandas 3). Prints a table, then one JSON line with the figures the issue asks
for. Medians of repeated runs. `--quick` (run by `make test`): the same steps on streams a hundredth the size and
fewer repeats, a few seconds; where the peers are not installed (the main venv) their rows say so and their
ratios are `null`.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timedelta
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from aiplatform.trading.book import (COMMAND_DTYPE, COMMAND_FIELDS, EVENT_FIELDS, GTC, IOC, LIMIT, OP_CANCEL,
                                     OP_MODIFY, OP_SUBMIT, OrderBook, _run)
from aiplatform.trading.journal import JournaledBook

MID, HALF_RANGE, TARGET_LIVE = 100_000, 375, 1000  # ~750 price levels, ~1,000 live orders

def mixed_stream(n, seed=1):
    "exchange-core's mix: 9% GTC, 3% IOC, 6% cancel, 82% move, over ~1,000 live orders on ~750 levels."
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND_DTYPE)
    live, side_of, next_id = [], {}, 1
    u, r_side, r_off, r_qty = rng.random(n), rng.integers(0, 2, n), rng.integers(1, HALF_RANGE + 1, n), rng.integers(1, 100, n)
    pick = rng.random(n)
    for i in range(n):
        x = u[i]
        op = "gtc" if x < 0.09 else "ioc" if x < 0.12 else "cancel" if x < 0.18 else "move"
        if op != "gtc" and op != "ioc" and not live: op = "gtc"
        if op == "gtc" and len(live) > 1.2 * TARGET_LIVE: op = "cancel"
        if op == "cancel" and len(live) < 0.8 * TARGET_LIVE: op = "gtc"
        side = int(r_side[i])
        if op == "gtc":
            price = MID - r_off[i] if side == 0 else MID + r_off[i]  # passive: rests on its own side
            c[i] = (OP_SUBMIT, next_id, 1 + next_id % 50, side, LIMIT, GTC, price, r_qty[i], 0, 0, 0, 0)
            side_of[next_id] = side
            live.append(next_id)
            next_id += 1
        elif op == "ioc":  # takes at up to 10 ticks through the middle
            price = MID + 10 if side == 0 else MID - 10
            c[i] = (OP_SUBMIT, next_id, 1 + next_id % 50, side, LIMIT, IOC, price, r_qty[i], 0, 0, 0, 0)
            next_id += 1
        else:
            k = int(pick[i] * len(live))
            oid = live[k]
            if op == "cancel":
                live[k] = live[-1]; live.pop()
                c[i] = (OP_CANCEL, oid, 1 + oid % 50, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            else:
                s = side_of[oid]
                price = MID - r_off[i] if s == 0 else MID + r_off[i]
                c[i] = (OP_MODIFY, oid, 1 + oid % 50, 0, 0, 0, price, 0, 0, 0, 0, 0)
    return c

def crossing_stream(n, seed=2):
    "Liquibook's insert test: random limit orders on both sides around one price, many of them crossing."
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND_DTYPE)
    c["op"], c["order_id"], c["user"] = OP_SUBMIT, np.arange(1, n + 1), rng.integers(1, 50, n)
    c["side"], c["price"], c["qty"] = rng.integers(0, 2, n), MID + rng.integers(-50, 51, n), rng.integers(1, 100, n)
    return c

@intrinsic
def _cycles(typingctx):
    "The CPU's cycle counter (llvm.readcyclecounter)."
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen

@njit
def _timed_run(O, L, P, PL, H, S, C, E, lat, rules):
    "Apply commands one at a time under the matching `rules`, recording each one's cycles."
    for i in range(C.shape[0]):
        t0 = _cycles()
        E, n = _run(O, L, P, PL, H, S, C[i:i + 1], E, rules)
        lat[i] = _cycles() - t0
    return E

def ns_per_cycle():
    t0, c0 = time.perf_counter_ns(), _cycles_now()
    time.sleep(0.2)
    return (time.perf_counter_ns() - t0) / (_cycles_now() - c0)

@njit
def _cycles_now(): return _cycles()

def warm_book(stream, warm):
    book = OrderBook(capacity=4096)
    book.process(stream[:warm], keep_events=False)
    return book

FULL = dict(warm=20_000, mixed=2_000_000, insert=2_000_000, submit=100_000, replay=10_000_000, peers=200_000,
            order_matching=3_000, repeats=5)
QUICK = dict(warm=2_000, mixed=20_000, insert=20_000, submit=2_000, replay=100_000, peers=10_000, order_matching=300, repeats=3)

def bench_mixed(stream, warm, repeats=5):
    "Throughput of the mixed stream in one batch, and per-command latency inside the compiled loop."
    times = []
    for _ in range(repeats):
        book = warm_book(stream, warm)
        t = time.perf_counter()
        book.process(stream[warm:], keep_events=False)
        times.append(time.perf_counter() - t)
    ops = (len(stream) - warm) / statistics.median(times)
    book = warm_book(stream, warm)
    C = stream[warm:].view(np.int64).reshape(-1, len(COMMAND_FIELDS))
    book._reserve(len(C))
    lat = np.zeros(len(C), np.int64)
    _timed_run(book._O, book._L, book._P, book._PL, book._H, book._S, C, np.empty((1024, len(EVENT_FIELDS)), np.int64), lat, book.rules)
    ns = lat * ns_per_cycle()
    return ops, {p: float(np.percentile(ns, p)) for p in (50, 99, 99.9, 99.99)}

def bench_insert(stream, repeats=5):
    times = []
    for _ in range(repeats):
        book = OrderBook(capacity=len(stream))
        t = time.perf_counter()
        book.process(stream, keep_events=False)
        times.append(time.perf_counter() - t)
    return len(stream) / statistics.median(times)

def bench_python_submit(n=100_000):
    book, rng = OrderBook(), np.random.default_rng(3)
    sides, prices, qtys = rng.integers(0, 2, n).tolist(), (MID + rng.integers(-50, 51, n)).tolist(), rng.integers(1, 100, n).tolist()
    lat = np.empty(n)
    names = ("buy", "sell")
    for i in range(n):
        t = time.perf_counter_ns()
        book.submit(i + 1, names[sides[i]], prices[i], qtys[i])
        lat[i] = time.perf_counter_ns() - t
    return float(np.percentile(lat, 50)) / 1000, float(np.percentile(lat, 99)) / 1000

def bench_replay(n=10_000_000, repeats=3):
    "Recover a book from a journal of `n` commands (no snapshot): read, verify checksums, replay."
    stream = mixed_stream(min(n, 2_000_000), seed=4)
    with tempfile.TemporaryDirectory() as folder:
        jb = JournaledBook.open(folder, fsync="never", snapshot_every=10**12)
        written = 0
        while written < n:  # the generated stream repeated with fresh ids: a long journal of valid-looking commands
            part = stream.copy()
            part["order_id"] += written
            k = min(len(part), n - written)
            jb.process(part[:k], keep_events=False)
            written += k
        jb.close()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            again = JournaledBook.open(folder, fsync="never", snapshot_every=10**12)
            times.append(time.perf_counter() - t)
            assert again.recovery["replayed"] == n
            again.close()
    return n / statistics.median(times)

def bench_cold_start(repeats=5):
    code = "from aiplatform.trading.book import OrderBook; b = OrderBook(); b.submit(1, 'sell', 100, 1); assert b.submit(2, 'buy', 100, 1)[1].kind == 'trade'"
    subprocess.run([sys.executable, "-c", code], check=True)  # warms the compile cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)

def bench_nautilus(stream, repeats=3):
    "nautilus-trader's L3 book on the same stream as adds (GTC), updates (moves) and deletes (cancels); IOCs skipped."
    from nautilus_trader.model.book import OrderBook as NBook
    from nautilus_trader.model.data import BookOrder
    from nautilus_trader.model.enums import BookType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import Price, Quantity
    sides, ops, side_of, qty_of = (OrderSide.BUY, OrderSide.SELL), [], {}, {}
    for op, oid, user, side, kind, tif, price, qty, *_ in stream.tolist():
        if op == OP_SUBMIT and tif == GTC:
            side_of[oid], qty_of[oid] = side, qty
            ops.append((0, BookOrder(sides[side], Price(price, 0), Quantity(qty, 0), oid)))
        elif op == OP_MODIFY and oid in side_of:
            ops.append((1, BookOrder(sides[side_of[oid]], Price(price, 0), Quantity(qty_of[oid], 0), oid)))
        elif op == OP_CANCEL and oid in side_of:
            ops.append((2, BookOrder(sides[side_of.pop(oid)], Price(MID, 0), Quantity(1, 0), oid)))
    times = []
    for _ in range(repeats):
        book = NBook(InstrumentId.from_str("BENCH.SIM"), BookType.L3_MBO)
        add, update, delete = book.add, book.update, book.delete
        t = time.perf_counter()
        for seq, (op, order) in enumerate(ops):
            if op == 0: add(order, seq, 0, seq + 1)
            elif op == 1: update(order, seq, 0, seq + 1)
            else: delete(order, seq, 0, seq + 1)
        times.append(time.perf_counter() - t)
    return len(ops) / statistics.median(times), len(ops)

def bench_order_matching(stream):
    "The pure-Python `order-matching` engine on the same stream: place + match, cancels, moves as cancel + place."
    from loguru import logger
    logger.remove()
    from order_matching.enums import Side
    from order_matching.matching_engine import MatchingEngine
    from order_matching.order import LimitOrder
    from order_matching.orders import Orders
    engine, ts, side_of = MatchingEngine(seed=1), datetime(2026, 1, 1), {}
    sides = (Side.BUY, Side.SELL)
    t = time.perf_counter()
    for i, (op, oid, user, side, kind, tif, price, qty, *_) in enumerate(stream.tolist()):
        now = ts + timedelta(microseconds=i)
        if op == OP_SUBMIT:
            side_of[oid] = side
            engine.place(Orders([LimitOrder(side=sides[side], price=float(price), size=float(qty), timestamp=now,
                                            order_id=str(oid), trader_id=str(user))]))
        elif oid in side_of and engine.unprocessed_orders.find_order_by_id(str(oid)) is not None:
            engine.cancel_order(str(oid))
            if op == OP_MODIFY:
                engine.match(timestamp=now)
                engine.place(Orders([LimitOrder(side=sides[side_of[oid]], price=float(price), size=1.0, timestamp=now,
                                                order_id=f"{oid}m{i}", trader_id=str(user))]))
        engine.match(timestamp=now)
    return len(stream) / (time.perf_counter() - t)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the same steps on small streams with few repeats (a few seconds)")
    z = QUICK if ap.parse_args().quick else FULL
    warm, repeats = z["warm"], z["repeats"]
    stream = mixed_stream(z["mixed"] + warm)
    mixed_ops, lat = bench_mixed(stream, warm, repeats)
    insert = bench_insert(crossing_stream(z["insert"]), repeats)
    submit_p50, submit_p99 = bench_python_submit(z["submit"])
    replay = bench_replay(z["replay"])
    cold = bench_cold_start(repeats)
    peer_stream = stream[:z["peers"] + warm]
    ours_peer = len(peer_stream) / statistics.median(_time(lambda: OrderBook(capacity=4096).process(peer_stream, keep_events=False))
                                                     for _ in range(3))
    try: nautilus, nautilus_ops = bench_nautilus(peer_stream)
    except ImportError: nautilus, nautilus_ops = None, 0
    try: om = bench_order_matching(stream[:z["order_matching"]])
    except ImportError: om = None
    missing = "not installed (the `bench` extra: make bench)"
    rows = [("mixed load (exchange-core mix)", f"{mixed_ops:,.0f} ops/s"),
            ("  latency p50 / p99 / p99.9 / p99.99", " / ".join(f"{lat[p]:,.0f} ns" for p in (50, 99, 99.9, 99.99))),
            ("insert, crossing stream", f"{insert:,.0f} orders/s"), ("Python submit p50 / p99", f"{submit_p50:.2f} / {submit_p99:.2f} us"),
            (f"journal replay ({_count(z['replay'])} commands)", f"{replay:,.0f} commands/s"), ("cold start (cache warm)", f"{cold:.2f} s"),
            (f"ours on the peers' stream ({_count(len(peer_stream))})", f"{ours_peer:,.0f} ops/s"),
            ("nautilus-trader L3 book" + (f" ({nautilus_ops:,} add/update/delete)" if nautilus else ""),
             f"{nautilus:,.0f} ops/s  -> ours {ours_peer / nautilus:.1f}x" if nautilus else missing),
            (f"order-matching ({_count(z['order_matching'])} commands)", f"{om:,.0f} ops/s  -> ours {ours_peer / om:,.0f}x" if om else missing)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for name, value in rows: print(f"{name:<52} {value}")
    print(json.dumps(dict(mixed_ops_per_s=round(mixed_ops), mixed_p50_ns=round(lat[50]), mixed_p99_ns=round(lat[99]),
                          mixed_p999_ns=round(lat[99.9]), mixed_p9999_ns=round(lat[99.99]), insert_per_s=round(insert),
                          submit_p50_us=round(submit_p50, 2), submit_p99_us=round(submit_p99, 2), replay_per_s=round(replay),
                          cold_start_s=round(cold, 3), vs_nautilus=round(ours_peer / nautilus, 2) if nautilus else None,
                          vs_order_matching=round(ours_peer / om, 1) if om else None)
                     | (dict(quick=True) if z is QUICK else {})))

def _count(n): return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n / 1000:g}k" if n >= 1000 else str(n)

def _time(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t

if __name__ == "__main__": main()
