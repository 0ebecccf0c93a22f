"""The trading service killed with SIGKILL under load and started again: every acknowledged order is back, positions
equal the fills, a repeated client order id is never a second order, clients reconnect and resync. And a market split
over two shards."""
import asyncio, json, os, random, signal, time, urllib.request
import pytest
from aiplatform.core import NotFound, ValidationError
from trading_service import make_users, start_trading, stop
from aiplatform.trading.client import AsyncTradingClient, order_message
from aiplatform.trading.market import shard_of

async def _trade(url, key, name, acked, sent, stop_at):
    "Send crossing orders in small frames until the connection fails or time is up; record what was acknowledged."
    rng = random.Random(name)
    async with AsyncTradingClient(url, key) as c:
        i = 0
        while time.monotonic() < stop_at:
            frame = [order_message("DEMO", rng.choice(["buy", "sell"]), rng.randint(1, 5), rng.randint(95, 105), cid=f"{name}-{i + k}")
                     for k in range(rng.randint(1, 20))]
            i += len(frame)
            sent.extend(m["cid"] for m in frame)
            try: answers = await c.requests(frame, check=False)
            except ConnectionError: return
            for a in answers:
                if a["type"] == "ack": acked[a["order"]["cid"]] = a["order"]

def test_a_killed_service_loses_no_acknowledged_order(tmp_path):
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0, fsync="batch")
    acked, sent = {"tess": {}, "tom": {}}, {"tess": [], "tom": []}
    async def load_then_kill():
        watcher = AsyncTradingClient(svc.url, keys["vic"])
        await watcher.subscribe("book", "DEMO")
        stop_at = time.monotonic() + 30
        traders = [asyncio.create_task(_trade(svc.url, keys[n], n, acked[n], sent[n], stop_at)) for n in ("tess", "tom")]
        while min(len(a) for a in acked.values()) < 50 and time.monotonic() < stop_at: await asyncio.sleep(0.05)
        stop(svc, signal.SIGKILL)  # mid-load: frames in flight, answers unsent
        await asyncio.gather(*traders)
        for _ in range(100):
            if not watcher.connected("DEMO"): break
            await asyncio.sleep(0.05)
        assert not watcher.connected("DEMO") and "DEMO" not in watcher.books  # not followed while away: not kept as if it were
        return watcher
    async def restart_and_check(watcher):
        nonlocal svc
        svc2 = start_trading(tmp_path, symbols="DEMO", price_band_pct=0, fsync="batch", port=port)
        for name in ("tess", "tom"):
            async with AsyncTradingClient(svc2.url, keys[name]) as c:
                after = {o["cid"]: o for o in (await c.orders_frame("all", limit=10_000)).to_dict("records")}
                for cid, state in acked[name].items():  # every acknowledged order is back, at least as far along
                    assert cid in after and after[cid]["status"] != "lost" and after[cid]["filled"] >= state["filled"], cid
                fills = await c.fills_frame(limit=10_000)
                positions = (await c.positions_frame()).set_index("symbol")
                signed = (fills.qty * fills.side.map({"buy": 1, "sell": -1})).sum()
                assert positions.loc["DEMO", "qty"] == signed
                known = [cid for cid in sent[name] if cid not in acked[name] and cid in after]  # reached the service, answer lost
                if known:  # sent again, each is the order it was (or lost), never a second one
                    again = await c.requests([order_message("DEMO", "buy", 1, 100, cid=cid) for cid in known], check=False)
                    assert [a["order"]["order_id"] for a in again] == [after[cid]["order_id"] for cid in known]
        for _ in range(100):  # the watcher reconnected by itself and its book follows the service again
            if watcher.reconnects and "DEMO" in watcher.books: break
            await asyncio.sleep(0.1)
        depth = await watcher.depth("DEMO", 10)
        assert watcher.books["DEMO"].seq == depth["seq"]
        assert watcher.books["DEMO"].depth()["asks"] == [tuple(x) for x in depth["asks"]]
        await watcher.close()
        return svc2
    async def main():
        watcher = await load_then_kill()
        return await restart_and_check(watcher)
    port = int(svc.url.rsplit(":", 1)[1].strip("/"))
    svc2 = asyncio.run(main())
    assert 100 < sum(len(a) for a in acked.values()) and max(len(s) for s in sent.values()) < 10_000
    stop(svc2)

def test_two_shards_own_disjoint_symbols(tmp_path):
    keys = make_users(tmp_path)
    symbols = "DEMO ACME GOOG EURUSD"
    shards = [start_trading(tmp_path, symbols=symbols, shards=2, shard=k) for k in (0, 1)]
    try:
        async def main():
            async with AsyncTradingClient([s.url for s in shards], keys["tess"]) as c:
                listed = await c.symbols()
                assert sorted(listed.symbol) == sorted(symbols.split())
                assert all(shard_of(row.symbol, 2) == row.shard for row in listed.itertuples())
                for symbol in symbols.split():
                    await c.order(symbol, "sell", 1, 100, cid=f"s-{symbol}")
                open_ = await c.orders_frame()
                assert sorted(open_.symbol) == sorted(symbols.split())
                wrong = next(s for s in symbols.split() if shard_of(s, 2) == 1)
                answer = (await c.requests([order_message(wrong, "buy", 1, 100)], shard=0, check=False))[0]
                assert (answer["status"], answer["error"]) == (421, f"symbol {wrong!r}: not on this shard, 0 of 2: shard 1 trades it if any does")
                assert sorted(await c.cancel_all()) == sorted(f"s-{s}" for s in symbols.split())
        asyncio.run(main())
    finally:
        for s in shards: stop(s)

def test_on_two_shards_a_client_finds_orders_it_never_saw_and_a_repeated_cid_answers_the_order_it_names(tmp_path):
    keys = make_users(tmp_path)
    on = {k: [s for s in "DEMO ACME GOOG EURUSD".split() if shard_of(s, 2) == k] for k in (0, 1)}
    shards = [start_trading(tmp_path, symbols="DEMO ACME GOOG EURUSD", shards=2, shard=k, price_band_pct=0) for k in (0, 1)]
    try:
        async def main():
            async with AsyncTradingClient([s.url for s in shards], keys["tess"]) as placing:
                for k in (0, 1): await placing.order(on[k][0], "buy", 1, 100, cid=f"on{k}")
                again = await placing.order(on[1][0], "sell", 5, 90, cid="on0")  # before: ValidationError, where one shard answers the order's state
                assert (again["symbol"], again["side"], again["status"]) == (on[0][0], "buy", "open")
                await placing.order(on[0][0], "buy", 1, 100, cid="dup", tif="IOC")  # done at once: nothing to take
            async with AsyncTradingClient([s.url for s in shards], keys["tess"]) as other:  # knows nothing of it: on the other shard, another order
                assert (await other.order(on[1][0], "buy", 1, 100, cid="dup"))["status"] == "open"
            async with AsyncTradingClient([s.url for s in shards], keys["tess"]) as fresh:  # a new notebook: it has seen none of them
                assert (await fresh.modify("on1", qty=3))["remaining"] == 3  # before: NotFound "its shard is unknown"
                assert (await fresh.cancel("on0"))["status"] == "cancelled"
                with pytest.raises(NotFound, match="^order 'nope': no such client order id in this account on any of the 2 shards$"): await fresh.cancel("nope")
                with pytest.raises(NotFound, match=r"^order 'nope': no such client order id in this account on this shard \(1 of 2: each keeps its own\)$"):
                    await fresh.get("orders/nope", 1)  # a program asking one shard: told the ids are its own
                assert (await fresh.cancel("dup"))["symbol"] == on[1][0]  # the open one, whichever shard answers first
                with pytest.raises(ValidationError, match=r"^cid '\.\./me': expected a client order id"): await fresh.cancel("../me")  # before: a KeyError (GET /me)
                await fresh.order(on[0][0], "buy", 1, 100, cid="left")
                stop(shards[1])
                with pytest.raises(ConnectionError) as raised: await fresh.cancel_all()
                assert raised.value.cancelling == ["left"] and "the other shards are cancelling 1 order(s): left" in raised.value.__notes__  # before: the error alone
                assert (await fresh.get("orders/left", 0))["status"] == "cancelled"
        asyncio.run(main())
    finally:
        for s in shards: stop(s)

def test_a_shard_that_is_down_stops_no_other(tmp_path):
    import os, signal as sig
    keys = make_users(tmp_path)
    symbols = "DEMO ACME GOOG EURUSD"
    shards = [start_trading(tmp_path, symbols=symbols, shards=2, shard=k) for k in (0, 1)]
    on = {k: next(s for s in symbols.split() if shard_of(s, 2) == k) for k in (0, 1)}
    try:
        async def main():
            async with AsyncTradingClient([s.url for s in shards], keys["tess"]) as c:
                for k in (0, 1): await c.order(on[k], "sell", 1, 100, cid=f"d-{k}")
                for k in (1, 0): os.kill(shards[k].proc.pid, sig.SIGSTOP)
                ok = asyncio.ensure_future(c.order(on[1], "sell", 1, 101, cid="d-ok"))  # waits on shard 1
                hung = asyncio.ensure_future(c.order(on[0], "sell", 1, 101, cid="d-hung"))
                await asyncio.sleep(0.2)
                os.kill(shards[0].proc.pid, sig.SIGKILL)  # shard 0 dies: its connection closes, shard 1's goes on
                await asyncio.sleep(0.2)
                os.kill(shards[1].proc.pid, sig.SIGCONT)
                assert (await ok)["status"] == "open"
                try: await hung
                except ConnectionError: pass
                try: await c.cancel_all()
                except ConnectionError: pass
                else: raise AssertionError("cancel_all: shard 0 is down")
                return {cid: (await c.get(f"orders/{cid}", shard=1))["status"] for cid in ("d-1", "d-ok")}
        assert asyncio.run(main()) == {"d-1": "cancelled", "d-ok": "cancelled"}  # shard 1's orders cancelled all the same
    finally:
        for s in shards:
            if s.proc.poll() is None: stop(s)

def test_a_client_back_from_a_restart_knows_what_ended_meanwhile(tmp_path):
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    port = int(svc.url.rsplit(":", 1)[1].strip("/"))
    async def main():
        async with AsyncTradingClient(svc.url, keys["tess"]) as early, AsyncTradingClient(svc.url, keys["tom"]) as tom:
            await early.order("DEMO", "sell", 1, 100, cid="before"), await tom.order("DEMO", "buy", 1, 100)  # a fill `c` never saw
        async with AsyncTradingClient(svc.url, keys["tess"]) as c:
            await c.subscribe("orders"), await c.fetch_history()  # the fill before
            await c.order("DEMO", "sell", 1, 100, cid="now")
            async with AsyncTradingClient(svc.url, keys["tom"]) as tom: await tom.order("DEMO", "buy", 1, 100)
            async with asyncio.timeout(10):
                while not c.fills: await asyncio.sleep(0.05)
            await c.order("DEMO", "sell", 2, 100, cid="away")
            gate, socket = asyncio.Event(), c._socket
            async def gated(shard):  # the client stays away until the order has ended
                await gate.wait()
                return await socket(shard)
            c._socket = gated
            svc.proc.send_signal(signal.SIGKILL), svc.proc.wait()
            back = start_trading(tmp_path, port=port, symbols="DEMO", price_band_pct=0)
            async with AsyncTradingClient(back.url, keys["tom"]) as tom: await tom.order("DEMO", "buy", 2, 100)  # fills it
            gate.set()
            async with asyncio.timeout(30):
                while c.reconnects == 0: await asyncio.sleep(0.05)
            return back, c.orders["away"]["status"], [(f["cid"], f["qty"]) for f in c.fills]
    back, status, fills = asyncio.run(main())
    stop(back)
    assert (status, fills) == ("filled", [("before", 1), ("now", 1), ("away", 2)])  # each once, oldest first

def test_orders_of_a_connection_that_cancels_on_disconnect_are_cancelled_at_a_restart_after_a_kill(tmp_path):
    "Its connection did not outlive the process; before, they stayed open after the restart (a bot's stale quotes). An order placed over HTTP, or on another connection, stays."
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    port = int(svc.url.rstrip("/").rsplit(":", 1)[1])
    async def place():
        async with AsyncTradingClient(svc.url, keys["tess"], cancel_on_disconnect=True) as cod, AsyncTradingClient(svc.url, keys["tess"]) as plain:
            await cod.order("DEMO", "buy", 1, 90, cid="cod-1"), await plain.order("DEMO", "buy", 1, 91, cid="plain-1")
            stop(svc, signal.SIGKILL)
    asyncio.run(place())
    back = start_trading(tmp_path, port=port, symbols="DEMO", price_band_pct=0)
    async def look():
        async with AsyncTradingClient(back.url, keys["tess"]) as c: return {cid: (await c.get(f"orders/{cid}"))["status"] for cid in ("cod-1", "plain-1")}
    try: assert asyncio.run(look()) == {"cod-1": "cancelled", "plain-1": "open"}
    finally: stop(back)

def test_more_cod_orders_than_a_batch_are_all_cancelled_at_the_start_and_the_market_goes_on(tmp_path):
    "Past `MAX_BATCH` (2,048) the cancels took two batches; before, the second waited in the queue and nothing after it was ever flushed."
    from aiplatform.trading.market import MAX_BATCH, Market
    from aiplatform.trading.orders import Order
    m = Market(tmp_path, [{"symbol": "DEMO", "price_band_pct": 0}])
    for i in range(MAX_BATCH + 10):
        m.submit(i % 3 + 1, Order(cid=f"q{i}", symbol="DEMO", side="buy", price=100, qty=1), lambda *a: None, cancel_on_disconnect=True)  # 1,000 open orders an account at most
        if i % 500 == 499: m.flush()
    m.flush(), m.close()  # closed, not by its connections: as after a kill
    m = Market(tmp_path)
    assert not m.pending and all(s["status"] == "cancelled" for s in m.ledger.orders.values()) and len(m.ledger.orders) == MAX_BATCH + 10
    m.close()

def test_a_cancel_all_is_answered_only_once_its_cancels_are_journaled(tmp_path):
    "Killed the moment the answer came, over HTTP and over the WebSocket (3,000 orders: two batches): every order comes back cancelled (before: some or all still open)."
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    port = int(svc.url.rstrip("/").rsplit(":", 1)[1])
    def http_cancel_all(url):
        request = urllib.request.Request(url + "orders/cancel-all", method="POST", headers={"Authorization": f"Bearer {keys['tess']}"})
        with urllib.request.urlopen(request, timeout=30) as r: return json.loads(r.read())["cancelling"]
    async def place_cancel_kill(n, how):
        async with AsyncTradingClient(svc.url, keys["tess"]) as c:
            for k in range(0, n, 1_000): await c.requests([order_message("DEMO", "buy", 1, 50 + i % 40, cid=f"{how}-{i}") for i in range(k, min(n, k + 1_000))])
            cancelling = await c.cancel_all() if how == "ws" else await asyncio.to_thread(http_cancel_all, svc.url)
            os.killpg(svc.proc.pid, signal.SIGKILL)  # at once
            return cancelling
    async def still_open(url):
        async with AsyncTradingClient(url, keys["tess"]) as c: return len((await c.get("orders", status="open", limit=10_000))["orders"])
    try:
        for how in ("http", "ws"):
            cancelling = asyncio.run(place_cancel_kill(3_000, how))
            svc.proc.wait(30)
            svc = start_trading(tmp_path, port=port, symbols="DEMO", price_band_pct=0)
            assert (len(cancelling), asyncio.run(still_open(svc.url))) == (3_000, 0), how
    finally: stop(svc)
