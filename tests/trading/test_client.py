"""The Python client against a real service: a listener's failure costs the others nothing, the notebook client never
waits on itself and reads copies of the live state, a client closed twice is closed, nothing is left waiting, an
unsubscribed book stays dropped, `cancel_placed` cancels this client's orders only (an order whose answer a dropped
connection lost or that timed out among them, and those the rate limit refused sent again), a shard that never answers
holds up no other, a catch-up after a reconnect keeps what the stream said since and tells the fills missed, a close
names the shard and the service's reason, an order sent again after a cut stays placed, a fill brought twice is held and told
once, a dropped connection's book is gone at once, a closed client answers no query, and the client imports without the service."""
import asyncio, base64, contextlib, gc, hashlib, json, signal, socket, subprocess, sys, threading, time, warnings
import pandas as pd
import pytest
from conftest import free_port
from trading_service import Proxy, make_users, start_trading, stop
from aiplatform.trading import client
from aiplatform.trading.client import AsyncTradingClient, TradingClient, order_message
from aiplatform.core import NotFound, ValidationError
from aiplatform.trading.market import shard_of

@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    data = tmp_path_factory.mktemp("client")
    keys = make_users(data)
    service = start_trading(data, symbols="DEMO", price_band_pct=0)
    service.keys = keys
    yield service
    stop(service)

def test_a_failing_listener_costs_the_others_nothing(svc):
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as c:
            heard = []
            c.listeners += [lambda m: 1 / 0, heard.append]
            await c.order("DEMO", "buy", 1, 90)
            await c.order("DEMO", "buy", 1, 91)
            assert [m["type"] for m in heard] == ["ack", "ack"] and c._waiting == {}  # every answer taken back
            await c.requests([{"op": "order", "cid": "nope", "symbol": "NOPE", "side": "buy", "qty": 1, "price": 90}], check=False)
            assert "nope" not in c.placed and len(c.placed) == 2  # refused before it was an order: nothing to cancel, nothing kept
            await c.cancel_all()
    asyncio.run(main())

def test_a_price_that_is_no_json_number_is_refused_before_anything_is_sent(svc):
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as c:
            began = time.monotonic()
            with pytest.raises(ValidationError, match=r"^price nan \(message 1\): expected a finite number; nothing sent$"):  # before: a 30 s TimeoutError
                await c.requests([order_message("DEMO", "buy", 1, 90, cid="fine"), order_message("DEMO", "buy", 1, float("nan"), cid="nan")])
            assert time.monotonic() - began < 1 and c._waiting == {} and not c.placed
            with pytest.raises(NotFound): await c.get("orders/fine")  # the good one of the frame: not sent either
    asyncio.run(main())

def test_a_flat_position_has_no_average_price(svc):
    import json, urllib.request
    urllib.request.urlopen(urllib.request.Request(svc.url + "admin/symbols", data=json.dumps({"symbol": "FLAT", "price_band_pct": 0}).encode(), method="POST",
                           headers={"Authorization": f"Bearer {svc.keys['ada']}", "Content-Type": "application/json"}), timeout=30)
    with TradingClient(svc.url, svc.keys["tess"]) as tess, TradingClient(svc.url, svc.keys["tom"]) as tom:
        tom.order("FLAT", "sell", 3, 50), tess.order("FLAT", "buy", 3, 50)
        tom.order("FLAT", "buy", 3, 52), tess.order("FLAT", "sell", 3, 52)
        table = tess.positions_frame()
    p = table.set_index("symbol").loc["FLAT"]
    assert (p.qty, p.realized, str(table.avg_price.dtype)) == (0, 6.0, "float64") and pd.isna(p.avg_price)  # before: 0.0, an average price of nothing

def test_values_read_from_the_tables_are_sent_back_as_they_are_and_what_json_cannot_write_is_refused_by_name(svc):
    from decimal import Decimal
    with TradingClient(svc.url, svc.keys["tess"]) as tc:
        tc.order("DEMO", "buy", 4, 80, cid="table-1"), tc.order("DEMO", "buy", 1, kind="market", tif="IOC", cid="table-m")  # a market order's price: none
        table = tc.orders_frame("all", symbol="DEMO")
        assert str(table.price.dtype) == "Int64"  # before: float64 beside a market order, and 80.0 refused as no whole price
        assert (table.created == pd.to_datetime(table.created_ns, utc=True)).all() and abs(table.created.iloc[-1] - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=1)  # the service's times as UTC times
        row = table[table.cid == "table-1"].iloc[0]
        assert tc.modify("table-1", price=row.price + 1, qty=row.qty - 1)["price"] == 81  # NumPy integers (before: TypeError, naming no field)
        with pytest.raises(ValidationError, match=r"^qty Decimal\('2'\) \(message 0\): expected a number, a string, true or false, not a Decimal; nothing sent$"):
            tc.order("DEMO", "buy", Decimal("2"), 80, cid="table-2")
        with pytest.raises(ValidationError, match="^symbol 5: expected a symbol"): tc.order(5, "buy", 1, 80)  # before: AttributeError
        assert "table-2" not in tc.placed and tc.orders_frame("all", symbol="DEMO").cid.tolist() == table.cid.tolist()  # nothing sent
        with pytest.raises(ValidationError, match="cid"): tc.order("DEMO", "buy", 1, 80, cid="")  # refused by the service (before: a new id made up)
        with pytest.raises(client.OrderRejected, match=r"^order 'table-p': post_only_would_take"):  # named, as the HTTP route names it (before: the reason alone)
            tc.order("DEMO", "sell", 1, 81, cid="table-p", post_only=True)
        tc.cancel_all()
    with pytest.raises(ValueError, match=r"^url '127\.0\.0\.1:1': not an http\(s\) URL; expected the service's base URL"): TradingClient("127.0.0.1:1", svc.keys["tess"])

def test_fetch_history_with_a_viewers_key_says_why_it_has_none(svc, caplog):
    from aiplatform.core import Forbidden
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["vic"]) as vic:
            with pytest.raises(Forbidden, match="vic"): await vic.fetch_history()  # before: None, and a log line about a reconnect
            assert not vic._unfetched  # refused for good: not asked again
        proxy = Proxy(svc.url)
        proxy.gateway_down = True
        async with AsyncTradingClient(proxy.url, svc.keys["vic"]) as vic:
            with pytest.raises(ConnectionError, match="no answer now"): await vic.fetch_history()
            proxy.gateway_down = False
            await vic.subscribe("book", "DEMO")  # a connection opens: the history asked for again, in the background
            async with asyncio.timeout(5):
                while "refused: user 'vic'" not in caplog.text: await asyncio.sleep(0.05)
            assert not vic._unfetched
    asyncio.run(main())
    assert "a background task failed" not in caplog.text  # a refusal nobody waits for: one warning, not a fault of ours with its traceback

def test_the_notebook_client_never_waits_on_itself_and_reads_copies(svc):
    tc, failed = TradingClient(svc.url, svc.keys["tess"]), []
    def listener(m):  # on the client's own thread
        if m["type"] == "ack":
            began = time.monotonic()
            try: tc.cancel(m["order"]["cid"])
            except RuntimeError as e: failed.append((str(e), time.monotonic() - began))
    tc.aio.listeners.append(listener)
    tc.order("DEMO", "buy", 1, 90, cid="n1")
    deadline = time.monotonic() + 5
    while not failed and time.monotonic() < deadline: time.sleep(0.01)
    assert failed and "called from its own loop's thread" in failed[0][0] and failed[0][1] < 1
    orders = tc.orders
    orders["n1"]["status"] = "filled"
    orders.clear()  # a copy, its orders too: the client's own are untouched
    assert tc.orders["n1"]["status"] == "open" and tc.orders is not tc.orders  # before: the client's own order said filled
    placed = tc.placed
    placed.clear()
    assert tc.placed == {"n1"}  # before: the client's own set, emptied
    tc.cancel_all()
    tc.close()
    tc.close()  # closed twice: still closed, at once
    with pytest.raises(ConnectionError, match="TradingClient: closed"): tc.order("DEMO", "buy", 1, 90)
    assert tc._loop.is_closed()

def test_a_notebook_client_that_fails_to_start_leaves_no_thread():
    import threading
    before = {t.ident for t in threading.enumerate()}
    for urls in (None, 5):
        with pytest.raises(TypeError): TradingClient(urls, "key")
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []  # before: a "trading-client" thread each

def test_an_unsubscribed_book_stays_dropped(svc):
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["vic"]) as watcher, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            await watcher.subscribe("book", "DEMO"), await watcher.subscribe("trades", "DEMO")
            await tom.order("DEMO", "sell", 1, 120)
            while not watcher.books["DEMO"].asks: await asyncio.sleep(0.01)
            await watcher.unsubscribe("book", "DEMO"), await watcher.unsubscribe("trades", "DEMO")
            await tom.order("DEMO", "sell", 1, 121), await tom.order("DEMO", "buy", 1, 120)  # a delta and a trade no longer followed
            await asyncio.sleep(0.3)
            assert "DEMO" not in watcher.books and "DEMO" not in watcher.trades and watcher.resyncs == 0
            await tom.cancel_all()
    asyncio.run(main())

def test_cancel_placed_cancels_this_clients_orders_only(svc):
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as bot, AsyncTradingClient(svc.url, svc.keys["tom"]) as hand:
            await bot.subscribe("orders"), await hand.subscribe("orders")
            await bot.order("DEMO", "buy", 1, 80, cid="bot-1")
            await hand.order("DEMO", "buy", 1, 81, cid="hand-1")  # the same account, by hand
            await asyncio.sleep(0.2)  # the bot's client hears of it on the orders channel
            assert "hand-1" in bot.orders
            assert await bot.cancel_placed("DEMO") == ["bot-1"]
            open_ = await hand.orders_frame()
            assert list(open_.cid) == ["hand-1"]
            await hand.cancel_all()
    asyncio.run(main())

def test_a_shard_that_never_answers_holds_up_no_other(svc, monkeypatch):
    monkeypatch.setattr(client, "CONNECT_S", 1)  # 10 s by default
    mute = socket.socket()  # accepts connections, answers nothing
    mute.bind(("127.0.0.1", 0)), mute.listen()
    url_mute = f"http://127.0.0.1:{mute.getsockname()[1]}/"
    on_mute = next(s for s in ("ACME", "GOOG", "EURUSD") if shard_of(s, 2) != shard_of("DEMO", 2))
    urls = [None, None]
    urls[shard_of("DEMO", 2)], urls[shard_of(on_mute, 2)] = svc.url, url_mute
    async def main():
        async with AsyncTradingClient(urls, svc.keys["tess"]) as c:
            hung = asyncio.create_task(c.order(on_mute, "buy", 1, 90))
            await asyncio.sleep(0.2)  # its handshake under way
            began = time.monotonic()
            await c.order("DEMO", "buy", 1, 90, cid="other-shard")
            assert time.monotonic() - began < 2 and not hung.done()
            with pytest.raises(ConnectionError, match="no answer to the handshake in 1 s"): await hung
            began = time.monotonic()
            with pytest.raises(TimeoutError, match=f"^{url_mute}orders: no answer in 1 s$"): await c.orders_frame()  # before: TimeoutError(''), after 30 s one shard after the other
            with pytest.raises(TimeoutError, match=f"^{url_mute}orders/x: no answer in 1 s$"): await c.cancel("x")  # not on the shard that answered: the other cannot say
            assert time.monotonic() - began < 3
            await c.cancel_all(symbol="DEMO")
    monkeypatch.setattr(client, "GET_S", 1)  # 30 s by default
    try: asyncio.run(main())
    finally: mute.close()

def test_a_shard_that_stops_reading_times_the_request_out():
    server = socket.socket()  # completes the WebSocket handshake, then never reads again
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("127.0.0.1", 0)), server.listen()
    held = []
    def serve():
        conn, _ = server.accept()
        held.append(conn)
        _accept_ws(conn)
    threading.Thread(target=serve, daemon=True).start()
    orders = [dict(op="order", cid=f"c{i}", symbol="DEMO", side="buy", qty=1, price=100, pad="x" * 200) for i in range(40_000)]
    async def main():
        async with AsyncTradingClient(f"http://127.0.0.1:{server.getsockname()[1]}/", "key") as c:
            began = time.monotonic()
            with pytest.raises(TimeoutError, match="no answer to 40000 message"): await c.requests(orders, timeout=1)
            assert time.monotonic() - began < 5
            assert len(c.placed) % 1_000 == 0 and 0 < len(c.placed) < 40_000  # the frames handed to the socket may yet be placed: kept; the others not
            for conn in held: conn.close()  # gone: the client's close need not wait for an answer
    try: asyncio.run(main())
    finally: server.close()

def test_a_resync_the_rate_limit_refuses_is_tried_again_until_the_book_is_back(tmp_path):
    keys = make_users(tmp_path)
    service = start_trading(tmp_path, symbols="DEMO", price_band_pct=0, rate=5, burst=10)
    async def main():
        async with AsyncTradingClient(service.url, keys["tess"]) as c, AsyncTradingClient(service.url, keys["tom"]) as tom:
            await c.subscribe("book", "DEMO")
            await tom.order("DEMO", "sell", 1, 120)
            async with asyncio.timeout(10):
                while "DEMO" not in c.books or not c.books["DEMO"].asks: await asyncio.sleep(0.01)
            await c.requests([order_message("DEMO", "buy", 1, 50 + i) for i in range(12)], check=False)  # its burst spent
            c.books["DEMO"].bids[119] = 1  # and its book off at its best bid (in the top 10 however many of its bids the burst let in):
                                           # the next delta's checksum fails, its resync is refused
            await tom.order("DEMO", "sell", 1, 121)
            async with asyncio.timeout(10):  # before: the book was gone for good
                while "DEMO" not in c.books or len(c.books["DEMO"].asks) < 2: await asyncio.sleep(0.05)
            assert c.resyncs == 1 and dict(c.books["DEMO"].asks) == {120: 1, 121: 1} and 119 not in c.books["DEMO"].bids
    try: asyncio.run(main())
    finally: stop(service)

def test_a_subscription_reaches_every_shard_up_now_and_one_down_once_it_is_up(tmp_path):
    keys, symbols = make_users(tmp_path), "DEMO ACME GOOG EURUSD"
    on = {k: next(s for s in symbols.split() if shard_of(s, 2) == k) for k in (0, 1)}
    port0, shards = free_port(), {1: start_trading(tmp_path, symbols=symbols, shards=2, shard=1, price_band_pct=0)}
    async def filled(c, shard, cid):
        await c.order(on[shard], "sell", 1, 100, cid=cid)
        async with AsyncTradingClient(shards[shard].url, keys["tom"]) as tom: await tom.order(on[shard], "buy", 1, 100)
        async with asyncio.timeout(10):
            while c.orders[cid]["status"] != "filled": await asyncio.sleep(0.05)  # told by the orders channel
    async def main():
        async with AsyncTradingClient([f"http://127.0.0.1:{port0}/", shards[1].url], keys["tess"]) as c:
            subscribed = []
            c.listeners.append(lambda m: m["type"] == "subscribed" and subscribed.append(m["channel"]))
            with pytest.raises(ConnectionError): await c.subscribe("orders")  # shard 0 is down
            await filled(c, 1, "on-1")  # before: shard 1, after the shard down, was never asked
            shards[0] = start_trading(tmp_path, port=port0, symbols=symbols, shards=2, shard=0, price_band_pct=0)
            async with asyncio.timeout(20):
                while len(subscribed) < 2: await asyncio.sleep(0.1)  # shard 0's subscription, made once it is up
            await filled(c, 0, "on-0")  # subscribed once it was up
            done = await c.orders_frame("done", symbol=on[1])  # asked of its shard alone: the other answers 421 for it
            assert list(done.cid) == ["on-1"] and list((await c.fills_frame(symbol=on[0])).cid) == ["on-0"]
            assert list((await c.fills_frame()).cid) == ["on-1", "on-0"]  # in time order (before: shard by shard)
            with pytest.warns(UserWarning, match=r"fills_frame: the newest 1 rows; older ones left out"):  # before: said nothing
                assert list((await c.fills_frame(limit=1)).cid) == ["on-0"]  # the newest across shards (before: one a shard)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # before: "older ones may be left out" with exactly `limit` of them, none left out
                assert list((await c.fills_frame(limit=2)).cid) == ["on-1", "on-0"] and list((await c.orders_frame("done", symbol=on[1], limit=1)).cid) == ["on-1"]
    try: asyncio.run(main())
    finally:
        for s in shards.values(): stop(s)

def test_a_connection_that_opens_as_the_client_closes_is_closed(svc):
    async def main():
        c = AsyncTradingClient(svc.url, svc.keys["tess"])
        await c.close()
        with pytest.raises(ConnectionError, match="the client is closed"): await c._socket(0)
        assert (c._ws, c._session) == ({}, None)
    asyncio.run(main())

def test_a_refusal_for_good_is_what_subscribe_raises_and_a_shard_down_has_one_follower(svc):
    from aiplatform.core import Forbidden
    dead = f"http://127.0.0.1:{free_port()}/"
    async def main():
        async with AsyncTradingClient([dead, svc.url], svc.keys["vic"]) as c:
            with pytest.raises(Forbidden): await c.subscribe("orders")  # shard 0 down, shard 1 refusing a viewer: the refusal is said
            await asyncio.sleep(0.05)
            assert (c._subscribed, set(c._following)) == (set(), set())  # and nothing is tried again
        async with AsyncTradingClient(dead, svc.keys["tess"]) as c:
            for _ in range(3):
                with pytest.raises(ConnectionError): await c.subscribe("book", "DEMO")
            await asyncio.sleep(0.05)
            assert set(c._following) == {(0, "book", "DEMO")} and len(c._tasks) == 1  # before: a follower for each call
    asyncio.run(main())

def test_an_order_whose_answer_a_dropped_connection_lost_is_looked_up_and_cancelled_as_placed(svc):
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c:
            await c.order("DEMO", "buy", 1, 90, cid="cut-1")
            proxy.cut(from_service=True)
            with pytest.raises(ConnectionError): await c.order("DEMO", "buy", 1, 91, cid="cut-2")
            for _ in range(100):
                if c.reconnects: break
                await asyncio.sleep(0.1)
            assert "cut-2" in c.placed and c.orders["cut-2"]["status"] == "open"  # before: forgotten, though the service had placed it
            assert sorted(await c.cancel_placed()) == ["cut-1", "cut-2"]
    asyncio.run(main())

def test_an_order_sent_again_and_refused_stays_among_those_placed(svc):
    from aiplatform.core import ValidationError
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as c:
            await c.order("DEMO", "buy", 1, 90, cid="again-1")
            with pytest.raises(ValidationError, match="qty 0"): await c.order("DEMO", "buy", 0, 90, cid="again-1")  # refused: the order stands
            assert "again-1" in c.placed and await c.cancel_placed() == ["again-1"]  # before: forgotten, and left open
            answers = await c.requests([order_message("DEMO", "buy", 1, 90, cid="again-2"), order_message("DEMO", "buy", 0, 90, cid="again-2")], check=False)
            assert [a["type"] for a in answers] == ["ack", "reject"] and await c.cancel_placed() == ["again-2"]  # one frame, the cid twice: placed once
    asyncio.run(main())

def test_cancel_placed_sends_again_what_the_rate_limit_refused(tmp_path):
    keys = make_users(tmp_path)
    service = start_trading(tmp_path, symbols="DEMO", price_band_pct=0, rate=5, burst=10)
    async def main():
        async with AsyncTradingClient(service.url, keys["tess"]) as c:
            await c.requests([order_message("DEMO", "buy", 1, 50 + i) for i in range(8)])  # 8 of its burst of 10
            assert len(await c.cancel_placed()) == 8
            assert (await c.orders_frame()).empty  # before: 6 of the 8 refused by the rate limit, and left open
    try: asyncio.run(main())
    finally: stop(service)

def test_an_order_whose_answer_timed_out_is_looked_up_after_the_reconnect(svc):
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c:
            await c.order("DEMO", "buy", 1, 90, cid="slow-1")
            proxy.deaf = True  # the link half gone: the order reaches the service, its answer never comes back
            with pytest.raises(TimeoutError, match="no answer to 1 message"): await c.requests([order_message("DEMO", "buy", 1, 91, cid="slow-2")], timeout=1)
            proxy.deaf = False
            proxy.abort()  # the dead link noticed
            async with asyncio.timeout(10):
                while not c.reconnects: await asyncio.sleep(0.05)
            assert c.orders["slow-2"]["status"] == "open"  # before: not looked up, and left open by cancel_placed
            assert sorted(await c.cancel_placed()) == ["slow-1", "slow-2"]
    asyncio.run(main())

def test_a_reconnects_catch_up_refused_after_a_retry_is_logged_and_the_client_is_in_sync(svc, caplog):
    from aiplatform.core import AIPlatformError
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c:
            await c.subscribe("orders"), await c.subscribe("book", "DEMO")
            real, answers = c.get, [ConnectionError("orders: 502 Bad Gateway"), AIPlatformError("orders: 500 a gateway's own page")]
            async def flaky(path, shard=0, **params):
                if path == "orders" and answers: raise answers.pop(0)  # a catch-up's first try not now, its retry refused for good
                return await real(path, shard, **params)
            c.get = flaky
            proxy.abort()
            async with asyncio.timeout(10):
                while answers or not c.in_sync("DEMO"): await asyncio.sleep(0.05)  # before: the reconnect task failed, out of sync for good
            assert c.reconnects == 1
    asyncio.run(main())
    assert "catching up after a reconnect refused: orders: 500" in caplog.text and "a background task failed" not in caplog.text

def test_an_order_that_ends_as_a_reconnect_catches_up_is_told_though_a_subscribe_was_in_flight(svc):
    "The orders channel is subscribed on the new connection before the catch-up, though a subscribe lost with the last one waits to be tried again."
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["ada"]) as ada, AsyncTradingClient(svc.url, svc.keys["ada"]) as direct, \
                AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            await ada._socket(0)
            proxy.deaf = True  # the subscribe reaches the service, its answer never comes back: it is tried again after a back-off
            await ada.subscribe("orders", wait=[])
            await asyncio.sleep(0.1)
            placed = await direct.order("DEMO", "buy", 2, 39)  # this connection does not hear of it
            proxy.deaf = False
            proxy.abort()
            async with asyncio.timeout(10):
                while not ada.reconnects: await asyncio.sleep(0.005)
            assert ada.orders[placed["cid"]]["status"] == "open"  # the catch-up's
            await tom.order("DEMO", "sell", 2, 39)  # fills it at once, within the lost subscribe's back-off
            async with asyncio.timeout(5):
                while ada.orders[placed["cid"]]["status"] != "filled": await asyncio.sleep(0.02)  # before: open for good
    asyncio.run(main())

def test_cancel_placed_right_after_a_cut_cancels_the_order_whose_answer_the_cut_lost(svc):
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as bot:
            await bot.request("ping")  # connected
            proxy.cut(from_service=True)  # the order reaches the service; its answer is cut
            with pytest.raises(ConnectionError): await bot.order("DEMO", "buy", 1, 1, cid="unanswered-1")  # far below what others left resting: it rests
            assert await bot.cancel_placed() == ["unanswered-1"]  # at once, as a bot stopping on that error does: before, [] and left open
            assert (await bot.get("orders/unanswered-1"))["status"] == "cancelled"
    asyncio.run(main())

def test_a_query_of_a_service_that_cannot_be_reached_is_a_connection_error():
    async def main():
        async with AsyncTradingClient(f"http://127.0.0.1:{free_port()}/", "aip_x_y") as c:  # nothing listens there
            with pytest.raises(ConnectionError, match="cannot connect"): await c.orders_frame()  # before: aiohttp's ClientConnectorError
    asyncio.run(main())

def test_a_catch_up_keeps_what_the_stream_said_since_and_tells_the_fills_it_missed(svc):
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            heard = []
            c.listeners.append(lambda m: m["type"] == "fill" and heard.append(m["cid"]))
            await c.subscribe("orders")
            await c.order("DEMO", "sell", 1, 100, cid="gone-1"), await c.order("DEMO", "sell", 1, 101, cid="gone-2")
            await c.request("ping")  # after the orders channel's news of them
            get, slowed = c.get, []
            async def slow_get(path, *args, **kwargs):  # the catch-up's list of orders comes late: gone-2 fills meanwhile
                answer = await get(path, *args, **kwargs)
                if path == "orders" and not slowed:
                    slowed.append(path)
                    await tom.order("DEMO", "buy", 1, 101)
                    async with asyncio.timeout(10):
                        while c.orders["gone-2"]["status"] != "filled": await asyncio.sleep(0.02)  # the stream's word
                return answer
            c.get = slow_get
            proxy.cut(from_service=True)  # what the service says next is lost with the connection: gone-1's fill
            await tom.order("DEMO", "buy", 1, 100)
            async with asyncio.timeout(10):
                while not c.reconnects: await asyncio.sleep(0.05)
            assert (c.orders["gone-1"]["status"], c.orders["gone-2"]["status"]) == ("filled", "filled")  # before: gone-2 open again, for ever
            assert heard.count("gone-1") == 1  # its fill, missed while away, told once (before: never, and no bot's on_fill ran)
    asyncio.run(main())

def test_a_close_names_the_shard_and_the_services_reason():
    server = socket.socket()  # completes the WebSocket handshake, reads a request, then closes with a reason
    server.bind(("127.0.0.1", 0)), server.listen()
    def serve():
        conn, _ = server.accept()
        _accept_ws(conn)
        conn.recv(4096)  # the request
        reason = (1008).to_bytes(2, "big") + b"slow consumer: 11 messages waiting"
        conn.sendall(bytes([0x88, len(reason)]) + reason)
        time.sleep(1)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    async def main():
        async with AsyncTradingClient(url, "key") as c:
            with pytest.raises(ConnectionError, match=rf"^{url}ws: connection closed \(code 1008: slow consumer: 11 messages waiting\)$"): await c.request("ping")
    try: asyncio.run(main())
    finally: server.close()

def test_a_catch_up_asks_for_the_open_orders_past_its_list(svc, monkeypatch):
    monkeypatch.setattr(client, "CATCH_UP_LIMIT", 3)  # 10,000 by default: an account with more done orders than that
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            await c.subscribe("orders")
            await c.order("DEMO", "buy", 1, 60, cid="deep-1")
            await c.request("ping")  # after the orders channel's news of it
            proxy.gateway_down = True
            proxy.abort()  # the client away till the gateway is back...
            await tom.order("DEMO", "sell", 1, 60)  # ...while deep-1 fills
            async with AsyncTradingClient(svc.url, svc.keys["tess"]) as tess:  # the account's other session: more changes since, newer than deep-1
                await tess.requests([order_message("DEMO", "sell", 1, 500, tif="IOC") for _ in range(4)])
            proxy.gateway_down = False
            async with asyncio.timeout(10):
                while not c.reconnects: await asyncio.sleep(0.05)
            assert c.orders["deep-1"]["status"] == "filled"  # before: open for good, past the list of the newest
    asyncio.run(main())

def test_a_catch_up_asks_only_for_what_changed_while_away_though_dropped_again_meanwhile(svc):
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom, \
                AsyncTradingClient(svc.url, svc.keys["tess"]) as tess:  # the account's other session
            await c.subscribe("orders")
            await c.requests([order_message("DEMO", "sell", 1, 500, tif="IOC", cid=f"old-{i}") for i in range(5)])  # history: done at once
            await c.order("DEMO", "sell", 1, 100, cid="rest"), await c.order("DEMO", "sell", 1, 120, cid="moved")
            await c.request("ping")  # after the orders channel's news of them
            proxy.gateway_down = True
            proxy.abort()  # the client away till the gateway is back...
            await tom.order("DEMO", "buy", 1, 100)  # ...while rest fills...
            await tess.modify("moved", price=121)  # ...then moved changes, open: the orders channel's first message, at the reconnect, says so
            get, asked = c.get, []
            async def dropped_at_first(path, *args, **kwargs):
                if path == "orders" and not asked:  # the first catch-up's list: the connection drops again
                    asked.append(None)
                    proxy.abort()
                    async with asyncio.timeout(5):
                        while c.connected("DEMO"): await asyncio.sleep(0.01)
                    raise ConnectionError("dropped again")
                answer = await get(path, *args, **kwargs)
                if path == "orders": asked.append((kwargs.get("since_ns"), sorted(o["cid"] for o in answer["orders"])))
                return answer
            c.get = dropped_at_first
            proxy.gateway_down = False  # ...and back
            async with asyncio.timeout(15):
                while not c.reconnects: await asyncio.sleep(0.05)
            assert (c.orders["rest"]["status"], c.orders["moved"]["price"]) == ("filled", 121)  # not since moved's change: rest's fill came before it
            assert asked[1][0] is not None and asked[1][1] == ["moved", "rest"]  # before: every order the account holds
    asyncio.run(main())

def test_the_client_imports_without_the_service():
    "A notebook's or a bot's client leaves out the service, its store and its migrations (0.9 s to import it, not 1.5 s)."
    loaded = subprocess.run([sys.executable, "-c", "import sys, aiplatform.trading.client, aiplatform.trading.bots; "
                             "print(sorted(m for m in ('aiplatform.trading.service', 'aiplatform.platform.store', 'alembic') if m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded

def _accept_ws(conn):
    "Complete, by hand, the WebSocket handshake a client began on `conn`."
    head = b""
    while b"\r\n\r\n" not in head: head += conn.recv(4096)
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode())

def _read_frame(conn) -> str:
    "The text of a client's next (masked) frame, of under 126 bytes."
    head = conn.recv(2)
    mask, data = conn.recv(4), conn.recv(head[1] & 0x7F)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data)).decode()

def _text(text: str) -> bytes: return bytes([0x81, len(text)]) + text.encode()  # a server's frame, of under 126 bytes

def test_a_frame_that_is_not_json_is_skipped_and_the_reader_goes_on():
    server = socket.socket()
    server.bind(("127.0.0.1", 0)), server.listen()
    def serve():
        conn, _ = server.accept()
        _accept_ws(conn)
        conn.sendall(_text("<html>a proxy's page</html>"))
        req = json.loads(_read_frame(conn))["req"]
        conn.sendall(_text(json.dumps({"type": "pong", "req": req})))
        time.sleep(1)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    async def main():
        async with AsyncTradingClient(f"http://127.0.0.1:{server.getsockname()[1]}/", "key") as c:
            assert (await c.requests([{"op": "ping"}], timeout=5))[0]["type"] == "pong"  # before: the reader had ended, and the request timed out
    try: asyncio.run(main())
    finally: server.close()

def _page_server(status: bytes, page=b"<html><body>not the service</body></html>") -> socket.socket:
    "A server that answers every request with `page` (HTML) and `status`, as a proxy does."
    server = socket.socket()
    server.bind(("127.0.0.1", 0)), server.listen()
    def serve():
        while True:
            try: conn, _ = server.accept()
            except OSError: return
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(page), page))
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return server

def test_a_proxys_page_is_a_shard_down_or_names_its_status(svc):
    down, missing, empty = _page_server(b"503 Service Unavailable"), _page_server(b"404 Not Found"), _page_server(b"429 Too Many Requests", b"")
    url = lambda s: f"http://127.0.0.1:{s.getsockname()[1]}/"
    async def main():
        async with AsyncTradingClient([url(down), svc.url], svc.keys["tess"]) as c:
            with pytest.raises(ConnectionError, match="symbols: 503 Service Unavailable"): await c.get("symbols", 0)  # before: JSONDecodeError
            assert (await c.me())["username"] == "tess"  # the next shard asked, as when one is down
        async with AsyncTradingClient(url(missing), svc.keys["tess"]) as c:
            with pytest.raises(NotFound, match="symbols: 404 Not Found"): await c.get("symbols")
        async with AsyncTradingClient(url(empty), svc.keys["tess"]) as c:
            with pytest.raises(client.RateLimited, match="positions: 429 Too Many Requests"): await c.get("positions")  # a gateway's, empty: before, AttributeError
    try: asyncio.run(main())
    finally: down.close(), missing.close(), empty.close()

def test_cancel_placed_cancels_on_every_shard_at_once_and_a_silent_one_is_closed_within_close_s(svc):
    mute = socket.socket()  # completes the handshake, then answers nothing
    mute.bind(("127.0.0.1", 0)), mute.listen()
    held = []  # the accepted connection, open till the end: silent, not closed
    threading.Thread(target=lambda: _accept_ws(held.append(mute.accept()[0]) or held[0]), daemon=True).start()
    urls = [f"http://127.0.0.1:{mute.getsockname()[1]}/", svc.url, svc.url]  # in 3 shards, ACME is on the first, DEMO on the last
    on_mute = "ACME"
    assert (shard_of(on_mute, 3), shard_of("DEMO", 3)) == (0, 2)
    async def main():
        async with AsyncTradingClient(urls, svc.keys["tess"]) as c:
            await c.order("DEMO", "buy", 1, 90, cid="here")
            c.orders["there"] = c.orders["here"] | {"cid": "there", "symbol": on_mute}  # as if placed on the shard that went silent
            c.placed.add("there")
            cancelling = asyncio.create_task(c.cancel_placed())
            async with asyncio.timeout(5):  # before: the silent shard first, 30 s, and "here" never cancelled
                while c.orders["here"]["status"] != "cancelled": await asyncio.sleep(0.02)
            cancelling.cancel()
            return time.monotonic()
    try: closing = asyncio.run(main())
    finally: mute.close(), [c.close() for c in held]
    assert time.monotonic() - closing < client.CLOSE_S + 1  # before: 10 s (aiohttp's default)

def test_an_interrupted_subscribe_is_still_wanted_and_made_once_the_shard_answers(svc):
    proxy = Proxy(svc.url)
    async def main():
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            await c.request("ping")
            proxy.silent = True  # the link stalls: the subscribe waits
            subscribing = asyncio.create_task(c.subscribe("book", "DEMO"))
            await asyncio.sleep(0.3)
            proxy.silent = False  # the link back, the subscribe lost in it
            subscribing.cancel()  # a kernel's interrupt
            with pytest.raises(asyncio.CancelledError): await subscribing
            async with asyncio.timeout(5):  # before: remembered, never made (till a reconnect made it, unasked)
                while "DEMO" not in c.books: await asyncio.sleep(0.05)
            again = asyncio.create_task(c.subscribe("book", "DEMO"))
            await asyncio.sleep(0)
            again.cancel()  # a repeat subscribe interrupted: the book stays followed
            with contextlib.suppress(asyncio.CancelledError): await again
            await tom.order("DEMO", "buy", 1, 77, cid="bid-77")
            async with asyncio.timeout(5):
                while 77 not in c.books["DEMO"].bids: await asyncio.sleep(0.05)
            await tom.cancel("bid-77")
    asyncio.run(main())

def test_a_close_from_a_listener_is_refused_at_once_and_the_client_goes_on(svc):
    tc, refused = TradingClient(svc.url, svc.keys["tess"]), []
    def listener(m):  # on the client's own thread
        if m["type"] == "ack" and not refused:
            began = time.monotonic()
            try: tc.close()
            except RuntimeError as e: refused.append((str(e), time.monotonic() - began))
    tc.aio.listeners.append(listener)
    try:
        tc.order("DEMO", "buy", 1, 76, cid="in-listener")
        assert refused[0][0].startswith("TradingClient: called from its own loop's thread") and refused[0][1] < 0.5  # before: the loop held 5 s
        assert tc.cancel("in-listener")["status"] == "cancelled"  # still open (before: closed, its loop stopped)
    finally: tc.close()

def test_a_catch_up_that_fails_is_tried_again_until_the_client_knows_what_ended_meanwhile(svc):
    proxy = Proxy(svc.url)
    async def main():
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            await c.subscribe("orders")
            await c.order("DEMO", "buy", 2, 74, cid="away")
            tries, catch_up = [], c._catch_up
            async def counted(shard, *args):
                tries.append(await catch_up(shard, *args))
                return tries[-1]
            c._catch_up = counted
            def flap(m):  # the WebSocket back (its orders' first message): the gateway answers 502 to the catch-up's request
                if m["type"] == "orders": proxy.gateway_down = True
            c.listeners.append(flap)
            proxy.abort()  # the link drops...
            await tom.order("DEMO", "sell", 2, 74)  # ...and meanwhile the order fills
            async with asyncio.timeout(10):
                while not tries: await asyncio.sleep(0.02)
            c.listeners.remove(flap)
            proxy.gateway_down = False
            async with asyncio.timeout(10):  # before: never tried again, the order open here for good, its fill unknown
                while not c.reconnects: await asyncio.sleep(0.05)  # counted once caught up
            assert tries[0] is False and tries[-1] is True and c.orders["away"]["status"] == "filled" and "away" in [f["cid"] for f in c.fills]
    asyncio.run(main())

def test_requests_cut_off_together_leave_no_error_unretrieved(svc):
    proxy = Proxy(svc.url)
    async def main():
        unretrieved = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unretrieved.append(context["message"]))
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c:
            await c.request("ping")
            proxy.silent = True
            sending = asyncio.create_task(c.requests([{"op": "ping"} for _ in range(3)]))
            await asyncio.sleep(0.2)
            proxy.abort()
            done, _ = await asyncio.wait([sending])
            assert isinstance(sending.exception(), ConnectionError)
            del sending, done  # the error, its frames, their futures: garbage, each future's error reported if never retrieved
            gc.collect()
        assert unretrieved == []  # before: "Future exception was never retrieved", twice
    asyncio.run(main())

class Interrupted(Exception): "A kernel's interrupt, as these tests send it (a KeyboardInterrupt would end pytest's run)."

@contextlib.contextmanager
def interrupted_after(seconds):
    "Raise `Interrupted` in this (the main) thread `seconds` from now, by a signal as a kernel's interrupt does: it ends a wait on a lock too."
    armed = [True]
    def raised(*_):
        if armed[0]: raise Interrupted
    before = signal.signal(signal.SIGUSR1, raised)
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    timer.start()
    try: yield
    finally:
        armed[0] = False
        timer.cancel(), timer.join()  # sent by now, or never: not once the default action (the end of the process) is back
        signal.signal(signal.SIGUSR1, before)

def test_an_interrupted_close_drops_the_connection_and_its_orders_are_cancelled_at_once(svc):
    proxy = Proxy(svc.url)
    watcher, c = TradingClient(svc.url, svc.keys["tess"]), TradingClient(proxy.url, svc.keys["tess"], cancel_on_disconnect=True)
    try:
        c.order("DEMO", "buy", 1, 80, cid="cod")
        proxy.silent = True  # the link stalls: the close waits for the service's close frame
        async def cell(): c.close()  # in a loop of its own, as a notebook's cell runs
        with pytest.raises(Interrupted), interrupted_after(1): asyncio.run(cell())
        deadline = time.monotonic() + 5  # before: open until the service's ping timed out, some 45 s
        while "cod" in set(watcher.orders_frame()["cid"]) and time.monotonic() < deadline: time.sleep(0.1)
        assert "cod" not in set(watcher.orders_frame()["cid"]) and not c._thread.is_alive()
    finally: watcher.close()

def test_an_order_interrupted_before_it_reached_the_loop_is_never_sent(svc, monkeypatch):
    with TradingClient(svc.url, svc.keys["tess"]) as c:
        wake = c._loop._write_to_self
        def interrupted():  # the interrupt as the call is handed to the loop, before its wake-up is written
            monkeypatch.setattr(c._loop, "_write_to_self", wake)
            raise Interrupted
        monkeypatch.setattr(c._loop, "_write_to_self", interrupted)
        with pytest.raises(Interrupted): c.order("DEMO", "buy", 1, 81, cid="never")
        c.me()  # the loop wakes: before, the order went then
        time.sleep(0.2)
        assert "never" not in set(c.orders_frame()["cid"])

def test_a_client_or_bot_interrupted_as_it_starts_leaves_no_thread_and_no_bot(svc, monkeypatch):
    from aiplatform.trading.bots import BotThread, MarketMaker
    start = threading.Thread.start
    def interrupted(thread):  # the interrupt just after the client's or the bot's thread began
        start(thread)
        if thread.name == "trading-client" or thread.name.startswith("bot-"): raise Interrupted
    monkeypatch.setattr(threading.Thread, "start", interrupted)
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(Interrupted): TradingClient(svc.url, svc.keys["ada"])
    with pytest.raises(Interrupted): BotThread(MarketMaker("DEMO", spread=2, qty=1, fair=70), svc.url, svc.keys["ada"])
    monkeypatch.undo()
    time.sleep(1)  # a bot left running would be quoting by now
    assert [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()] == []  # before: "trading-client", "bot-market_maker"
    with TradingClient(svc.url, svc.keys["ada"]) as ada: assert ada.orders_frame(symbol="DEMO").empty

def test_fetch_history_brings_the_accounts_newest_done_orders_and_fills(svc):
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as tom, AsyncTradingClient(svc.url, svc.keys["tess"]) as early:
            await tom.order("DEMO", "sell", 1, 100)
            await early.order("DEMO", "buy", 1, 100, tif="IOC", cid="history-1")  # filled before the next session of the account
            await tom.cancel_placed()
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as c:
            await c.subscribe("orders")
            assert "history-1" not in c.orders  # the orders channel: the open orders, and what happens from now on
            await c.fetch_history()
            assert c.orders["history-1"]["status"] == "filled"
            assert [f["cid"] for f in c.fills][-1:] == ["history-1"]
    asyncio.run(main())

def test_history_not_fetched_while_connected_is_fetched_again_soon(svc, monkeypatch):
    monkeypatch.setattr(client, "FETCH_AGAIN_S", 0.2)
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as tom, AsyncTradingClient(svc.url, svc.keys["tess"]) as early:
            await tom.order("DEMO", "sell", 1, 100)
            await early.order("DEMO", "buy", 1, 100, tif="IOC", cid="history-2")
            await tom.cancel_placed()
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as c:
            await c.subscribe("orders")  # its connection open
            real, failed = c._catch_up, []
            async def once_too_slow(shard, since_ns=None, warn=True, raises=False):
                if not failed: return failed.append(shard) or False  # as a fetch given up by its caller, or a gateway's 502
                return await real(shard, since_ns, warn, raises)
            c._catch_up = once_too_slow
            with pytest.raises(ConnectionError, match="no answer now"): await c.fetch_history()
            async with asyncio.timeout(5):
                while "history-2" not in c.orders: await asyncio.sleep(0.05)  # before: only once a new connection opened
            assert c.orders["history-2"]["status"] == "filled"
    asyncio.run(main())

def test_a_shard_gone_silent_is_dropped_within_a_ping_and_a_half(svc, monkeypatch):
    monkeypatch.setattr(client, "PING_S", 1)  # 10 s by default; before: 60 s, then aiohttp's wait for the pong
    proxy = Proxy(svc.url)
    async def main():
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c:
            await c.subscribe("book", "DEMO")
            proxy.silent = proxy.deaf = True  # the link stalls both ways: no close, no reset
            began = time.monotonic()
            async with asyncio.timeout(5):
                while c.connected("DEMO"): await asyncio.sleep(0.05)  # a desk shows it disconnected, not its last book as live
            return time.monotonic() - began
    assert asyncio.run(main()) < 2

@pytest.fixture
def forgetful(tmp_path):
    "A service that keeps 3 done orders an account (`keep_done`)."
    keys = make_users(tmp_path)
    service = start_trading(tmp_path, symbols="DEMO", price_band_pct=0, keep_done=3)
    service.keys = keys
    yield service
    stop(service)

def test_an_order_held_open_that_ended_and_was_forgotten_while_away_is_no_longer_held_open(forgetful):
    svc, keys = forgetful, forgetful.keys
    proxy = Proxy(svc.url)
    async def main():
        async with AsyncTradingClient(proxy.url, keys["tess"]) as c, AsyncTradingClient(svc.url, keys["tom"]) as tom, \
                AsyncTradingClient(svc.url, keys["tess"]) as tess:  # the account's other session
            await c.subscribe("orders")
            await c.order("DEMO", "buy", 1, 50, cid="forgotten")
            await c.request("ping")
            proxy.gateway_down = True
            proxy.abort()  # the client away till the gateway is back...
            await tom.order("DEMO", "sell", 1, 50)  # ...while the order fills...
            await tess.requests([order_message("DEMO", "buy", 1, 10, tif="IOC") for _ in range(5)])  # ...and, 5 done orders later, is forgotten
            proxy.gateway_down = False
            async with asyncio.timeout(10):
                while not c.reconnects: await asyncio.sleep(0.05)
            assert "forgotten" not in c.orders and "forgotten" in [f["cid"] for f in c.fills]  # before: held open for good, a Cancel refused
    asyncio.run(main())

def test_an_order_the_stream_ends_during_a_catch_up_keeps_its_end(forgetful):
    svc, keys = forgetful, forgetful.keys
    proxy = Proxy(svc.url)
    async def main():
        async with AsyncTradingClient(proxy.url, keys["tess"]) as c, AsyncTradingClient(svc.url, keys["tom"]) as tom, \
                AsyncTradingClient(svc.url, keys["tess"]) as tess:
            await c.subscribe("orders")
            await c.order("DEMO", "buy", 1, 50, cid="X")
            await c.requests([order_message("DEMO", "buy", 1, 10, tif="IOC", cid="Y")])  # newer than X: the catch-up's since is past X
            await c.request("ping")
            get, hooked = c.get, []
            async def racing_get(path, *args, **kwargs):
                if path == "orders" and kwargs.get("status") == "open" and not hooked:  # the catch-up's open list: X ends, and is forgotten, as it is asked
                    hooked.append(path)
                    await tom.order("DEMO", "sell", 1, 50)
                    async with asyncio.timeout(10):
                        while c.orders["X"]["status"] != "filled": await asyncio.sleep(0.02)  # the stream's word
                    await tess.requests([order_message("DEMO", "buy", 1, 10, tif="IOC") for _ in range(5)])  # the service forgets X
                return await get(path, *args, **kwargs)
            c.get = racing_get
            proxy.gateway_down = True
            proxy.abort()
            await tom.order("DEMO", "buy", 1, 1)  # a change while away
            proxy.gateway_down = False
            async with asyncio.timeout(10):
                while not c.reconnects: await asyncio.sleep(0.05)
            assert hooked and c.orders["X"]["status"] == "filled"  # before: dropped, as if held open (or a KeyError ended the reconnect)
            await tom.cancel_all()
    asyncio.run(main())

def status_soon(svc, cid, wanted, within=5) -> str:
    "tess's order `cid` as the service says, once it is `wanted` or `within` seconds have gone."
    with TradingClient(svc.url, svc.keys["tess"]) as c:
        end = time.monotonic() + within
        while (status := c.get("orders/" + cid)["status"]) != wanted and time.monotonic() < end: time.sleep(0.05)
    return status

def test_a_notebook_client_never_closed_ends_once_collected(svc):
    "Its cell run again: the client, its thread and its connection end, and so do its cancel-on-disconnect orders (before: all lived on)."
    before = {t.ident for t in threading.enumerate()}
    c = TradingClient(svc.url, svc.keys["tess"], cancel_on_disconnect=True)
    cid = c.order("DEMO", "buy", 1, 50)["cid"]
    del c
    gc.collect()
    assert [t.name for t in threading.enumerate() if t.ident not in before and t.name == "trading-client"] == []  # pycares keeps one of its own
    assert status_soon(svc, cid, "cancelled") == "cancelled"

def test_many_open_orders_cost_no_scan_of_them_all_at_each_message():
    "Past twice `keep`, done orders are forgotten, then not again before `keep` more are held (before: every message scanned them all)."
    aio = AsyncTradingClient("http://127.0.0.1:1/", "key", keep=10)
    scans = []
    class Counted(dict):
        def items(self): scans.append(1); return super().items()
    aio.orders = Counted()
    aio._keep_orders([{"cid": f"o{i}", "order_id": i, "status": "open", "updated_ns": i} for i in range(30)])
    for i in range(30, 40): aio._keep_orders([{"cid": f"o{i}", "order_id": i, "status": "open", "updated_ns": i}])
    assert len(aio.orders) == 40 and len(scans) == 1  # at 30 held: none done, so not again before 40 are

def test_a_notebook_client_collected_on_its_own_loops_thread_ends_without_waiting_on_itself(svc):
    "Freed by a collection that runs on its loop's thread, it drops its connections there (before: that thread waited 5 s on itself and the connections lived on)."
    c = TradingClient(svc.url, svc.keys["tess"], cancel_on_disconnect=True)
    cid, loop, thread, took = c.order("DEMO", "buy", 1, 50)["cid"], c._loop, c._thread, []
    c.itself = c  # in a cycle: only a collection frees it
    gc.disable()
    try:
        del c
        def collect(): start = time.monotonic(); gc.collect(); took.append(time.monotonic() - start)
        loop.call_soon_threadsafe(collect)
        thread.join(10)
    finally: gc.enable()
    assert took and took[0] < 3 and not thread.is_alive(), took  # before: 5 s, waiting on itself
    assert status_soon(svc, cid, "cancelled") == "cancelled"

def test_an_order_sent_again_after_a_cut_stays_placed_though_the_retry_never_left(svc):
    "Its first answer cut, the same cid sent again at once fails before it is sent (the old socket closed): the order the first one placed stays this client's (before: dropped from `placed`, so `cancel_placed` left it open and a bot heard none of its fills)."
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tess"]) as c:
            await c.request("ping")
            proxy.cut(from_service=True)  # the order reaches the service; its answer is lost
            with pytest.raises(ConnectionError): await c.order("DEMO", "buy", 1, 60, cid="retried-1")
            proxy.gateway_down = True  # no reconnect before the retry
            with pytest.raises(ConnectionError, match="reconnecting"): await c.order("DEMO", "buy", 1, 60, cid="retried-1")
            assert "retried-1" in c.placed
            proxy.gateway_down = False
            for _ in range(100):
                if c.reconnects: break
                await asyncio.sleep(0.1)
            assert c.orders["retried-1"]["status"] == "open" and await c.cancel_placed() == ["retried-1"]
    asyncio.run(main())

def test_a_dropped_connections_book_is_gone_as_its_requests_fail(svc):
    "Code that catches the drop's error reads no book of that connection (before: shown until the reconnect's task began)."
    async def main():
        proxy = Proxy(svc.url)
        async with AsyncTradingClient(proxy.url, svc.keys["tom"]) as c:
            await c.subscribe("book", "DEMO")
            assert c.books.get("DEMO") is not None
            proxy.gateway_down = True
            proxy.cut(from_service=True)
            with pytest.raises(ConnectionError): await c.request("ping")
            assert "DEMO" not in c.books and not c.connected("DEMO")
            proxy.gateway_down = False
    asyncio.run(main())

def test_a_closed_client_answers_no_query(svc):
    "A query after `close` raises, and opens no session left unclosed (before: answered, and aiohttp warned of a session never closed)."
    async def main():
        c = AsyncTradingClient(svc.url, svc.keys["tom"])
        await c.request("ping")
        await c.close()
        with pytest.raises(ConnectionError, match="the client is closed"): await c.orders_frame()
        assert c._session is None
    asyncio.run(main())

def _fill(k) -> dict:
    return {"type": "fill", "fill_id": f"DEMO:{k}:m", "order_id": k, "cid": f"c{k}", "account": 1, "symbol": "DEMO", "side": "buy",
            "price": 100, "qty": 1, "liquidity": "maker", "ns": k}

def test_a_fill_brought_twice_is_held_and_told_once():
    "A fill a catch-up fetched while the stream lagged, then brought by the stream: held once and told once (before: twice, and a bot counted it twice); the ids held follow the fills kept."
    c = AsyncTradingClient("http://127.0.0.1:9/", "unused", keep=2)
    heard = []
    c.listeners.append(lambda m: heard.append(m["fill_id"]))
    for k in (1, 1, 2, 3): c._on(_fill(k))
    assert heard == ["DEMO:1:m", "DEMO:2:m", "DEMO:3:m"] and [f["fill_id"] for f in c.fills] == ["DEMO:2:m", "DEMO:3:m"]
    assert c._fill_ids == {"DEMO:2:m", "DEMO:3:m"}

def test_a_catch_up_starts_from_what_the_stream_brought_not_from_a_state_looked_up():
    "An order state looked up over HTTP (`cancel_placed`, `_holding`) newer than the stream's news does not move where a catch-up after a drop starts (before: it did, and the fills between were never fetched)."
    c = AsyncTradingClient("http://127.0.0.1:9/", "unused")
    c._stamp(0, _fill(100))
    c._keep_orders([{"order_id": 7, "cid": "looked-up", "symbol": "DEMO", "status": "filled", "updated_ns": 200}])
    c._stamp(0, {"type": "pong", "req": 1})
    assert c._streamed == {0: 100}
    c._stamp(0, {"type": "ack", "req": 2, "order": {"updated_ns": 150}})
    assert c._streamed == {0: 150}

def test_a_refusal_in_plain_code_is_shown_at_the_callers_line(svc):
    "Before: a notebook's mistyped symbol or price showed ten frames of the client's and concurrent.futures' before its one line."
    import traceback
    with TradingClient(svc.url, svc.keys["tess"]) as tc:
        with pytest.raises(NotFound, match="symbol 'NOPE': not traded") as refused: tc.order("NOPE", "buy", 1, 100)
        frames = [f.filename for f in traceback.extract_tb(refused.value.__traceback__)]
        assert len(frames) <= 3 and not any("concurrent" in f for f in frames), frames
        assert str(tc.symbols().last_price.dtype) == "Int64"  # before: object (None) until the first trade, then float
