"""A trading market's memory and pauses over a long run: each account's done orders forgotten past `[trading] keep_done`
(ours, 10,000) against the same market keeping every order (the peer: what it did before `keep_done`).

Run: `.venv/bin/python benchmarks/bench_retention.py [--orders 1000000]`. In process, no network: ten accounts send
pairs of orders that fill each other, 200 orders a batch, through `Market.submit` and `Market.flush` with the journal
and ledger on disk, a snapshot every 100,000 commands (the default), each market in a fresh child process. Prints,
for each, the resident memory every tenth of the run, the memory it gains per 100,000 orders over the second half,
orders/s and the slowest batch. Then, in a market holding 120,000 resting orders, how long a snapshot holds the loop:
ours (begun on the loop, written by a forked child, put in place by a later batch) against the same snapshot written
on the loop (`Engine.snapshot`, as the market did before), medians of 5. Then one JSON line. `--quick` (run by `make
test`): 20,000 orders, a snapshot every 2,000, 5,000 resting orders: figures that mean nothing."""
import argparse, json, os, platform, subprocess, sys, tempfile, time

def one(keep_done, orders, snapshot_every):
    "Trade `orders` orders in a market keeping `keep_done` done orders per account; a JSON line of what it measured."
    from aiplatform.trading.engine import RiskLimits
    from aiplatform.trading.market import Market
    from aiplatform.trading.orders import Order
    from aiplatform.trading.service import _rare_full_collections
    m = Market(tempfile.mkdtemp(), [{"symbol": "DEMO"}], limits=RiskLimits(price_band_pct=0, max_open_orders=10**7),
               snapshot_every=snapshot_every, keep_done=keep_done)
    _rare_full_collections()  # as the service does
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    noop, flushes, marks = lambda *a: None, [], []
    for side in ("sell", "buy"): m.submit(1, Order(cid=f"warm-{side}", symbol="DEMO", side=side, price=100, qty=1), noop)
    m.flush()  # the first batch loads the compiled book: not timed
    start = time.perf_counter()
    for i in range(orders // 2):
        account = 1 + i % 10
        m.submit(account, Order(cid=f"s{i}", symbol="DEMO", side="sell", price=100, qty=1), noop)
        m.submit(account, Order(cid=f"b{i}", symbol="DEMO", side="buy", price=100, qty=1), noop)
        if (2 * i + 2) % 200 == 0:
            t = time.perf_counter(); m.flush(); flushes.append(time.perf_counter() - t)
        if (2 * i + 2) % (orders // 10) == 0: marks.append(round(rss(), 1))
    took = time.perf_counter() - start
    m.close()
    flushes.sort()
    print(json.dumps(dict(keep_done=keep_done, rss_mb=marks, orders_per_s=round(orders / took), kept=len(m.ledger.orders),
                          slowest_batch_ms=round(flushes[-1] * 1e3, 1), p99_batch_ms=round(flushes[int(0.99 * len(flushes))] * 1e3, 2))))

def deep(resting):
    "Snapshot a market holding `resting` resting orders 5 times each way; a JSON line of the milliseconds the loop was held."
    import statistics
    from aiplatform.trading.engine import RiskLimits
    from aiplatform.trading.market import Market
    from aiplatform.trading.orders import Order
    m = Market(tempfile.mkdtemp(), [{"symbol": "DEMO", "price_band_pct": 0}],
               limits=RiskLimits(price_band_pct=0, max_open_orders=10**9), snapshot_every=10**12)
    for i in range(resting):  # 100 accounts, 50 price levels a side
        side, level = ("sell", 1 + i % 50) if i % 2 else ("buy", -1 - i % 50)
        m.submit(1 + i % 100, Order(cid=f"r{i}", symbol="DEMO", side=side, price=10_000 + 10 * level, qty=1), lambda *a: None)
        if i % 1_000 == 999: m.flush()
    m.flush()
    ms = lambda t: (time.perf_counter() - t) * 1e3
    begin, finish, inline = [], [], []
    order = lambda cid: (m.submit(1, Order(cid=cid, symbol="DEMO", side="buy", price=9_000, qty=1), lambda *a: None), m.flush())
    for k in range(5):  # an order before each snapshot: each has a sequence number of its own, as in a market that trades
        order(f"a{k}")
        t = time.perf_counter(); m.snapshot(); begin.append(ms(t))
        while "snapshot" in m._children:
            time.sleep(0.001)
            t = time.perf_counter(); m._reap(); took = ms(t)
        finish.append(took)
        order(f"b{k}")
        t = time.perf_counter(); m.ledger.sync(); m.engine.snapshot(); inline.append(ms(t))
    m.close()
    print(json.dumps({k: round(statistics.median(v), 1) for k, v in (("begin", begin), ("finish", finish), ("inline", inline))}))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="20,000 orders, a snapshot every 2,000")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # KEEP_DONE,ORDERS,SNAPSHOT_EVERY: run by main in a child process
    ap.add_argument("--deep", type=int, help=argparse.SUPPRESS)  # RESTING: run by main in a child process
    args = ap.parse_args()
    if args.one: return one(*map(int, args.one.split(",")))
    if args.deep: return deep(args.deep)
    orders, every = (20_000, 2_000) if args.quick else (args.orders, 100_000)
    runs = {}
    for name, keep in (("ours", 10_000), ("keep_all", 10**9)):
        out = subprocess.run([sys.executable, __file__, "--one", f"{keep},{orders},{every}"], capture_output=True, text=True, check=True)
        runs[name] = r = json.loads(out.stdout.splitlines()[-1])
        half = r["rss_mb"][len(r["rss_mb"]) // 2 - 1:]
        r["mb_per_100k"] = round((half[-1] - half[0]) / (orders / 2) * 100_000, 1)
        print(f"{name:<9} keep_done {keep:>13,}: RSS every {orders // 10:,} orders {r['rss_mb']} MB; +{r['mb_per_100k']} MB per 100,000 "
              f"orders over the second half; {r['orders_per_s']:,} orders/s; batch p99 {r['p99_batch_ms']} ms, slowest "
              f"{r['slowest_batch_ms']} ms; {r['kept']:,} orders kept", flush=True)
    resting = 5_000 if args.quick else 120_000
    out = subprocess.run([sys.executable, __file__, "--deep", str(resting)], capture_output=True, text=True, check=True)
    snap = json.loads(out.stdout.splitlines()[-1])
    print(f"a snapshot with {resting:,} resting orders holds the loop {snap['begin']} ms, and {snap['finish']} ms more when a later batch "
          f"puts it in place; written on the loop: {snap['inline']} ms ({snap['inline'] / (snap['begin'] + snap['finish']):.0f}x)", flush=True)
    ours, peer = runs["ours"], runs["keep_all"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {orders:,} orders, 10 accounts; "
          f"memory at the end: ours {ours['rss_mb'][-1]} MB, keeping all {peer['rss_mb'][-1]} MB ({peer['rss_mb'][-1] / ours['rss_mb'][-1]:.2f}x); "
          f"orders/s ours / keeping all: {ours['orders_per_s'] / peer['orders_per_s']:.2f}")
    print(json.dumps({"orders": orders, "rss_mb": ours["rss_mb"][-1], "rss_mb_keep_all": peer["rss_mb"][-1],
                      "mb_per_100k_orders": ours["mb_per_100k"], "mb_per_100k_orders_keep_all": peer["mb_per_100k"],
                      "orders_per_s": ours["orders_per_s"], "orders_per_s_keep_all": peer["orders_per_s"],
                      "slowest_batch_ms": ours["slowest_batch_ms"], "slowest_batch_ms_keep_all": peer["slowest_batch_ms"],
                      "p99_batch_ms": ours["p99_batch_ms"], "p99_batch_ms_keep_all": peer["p99_batch_ms"],
                      "snapshot_pause_ms": round(snap["begin"] + snap["finish"], 1), "snapshot_pause_ms_inline": snap["inline"],
                      "quick": args.quick}))

if __name__ == "__main__":
    main()
