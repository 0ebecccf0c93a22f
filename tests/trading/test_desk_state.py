"""The Trading Desk's widgets against a real service, without a browser: a reconnect follows the symbol shown, a
service with no symbols connects, a symbol left is no longer followed, a service gone shows no stale ladder, a bad bot parameter is said in the status line,
every symbol held marks the P&L, Cancel acts only on the order chosen and Cancel all on every symbol's, and a shard down stops no desk."""
import html, http.server, re, threading, time
from datetime import datetime
import pytest
from trading_service import Proxy, make_users, start_trading, stop
from aiplatform.core import load_settings
from aiplatform.trading.client import TradingClient
from aiplatform.trading.bots import bot_defaults
from aiplatform.trading.desk import TradingDesk, parse_params

@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    data = tmp_path_factory.mktemp("desk")
    keys = make_users(data)
    service = start_trading(data, symbols="DEMO ZETA", price_band_pct=0)
    service.keys, service.data = keys, data
    yield service
    stop(service)

def desk_on(svc, user) -> TradingDesk:
    d = TradingDesk(load_settings(env={}, platform={"data_dir": svc.data}, trading={"shard_urls": svc.url}))
    d.key.value = svc.keys[user]
    d.connect()
    return d

def test_a_reconnected_desk_still_follows_its_symbol(svc):
    d = desk_on(svc, "tess")
    with TradingClient(svc.url, svc.keys["tom"]) as tom: tom.order("DEMO", "sell", 5, 100), tom.order("DEMO", "buy", 1, 100)
    d.key.value = svc.keys["tom"]
    d.connect()  # the same symbol shown: nothing changes in the dropdown
    deadline = time.time() + 10
    while time.time() < deadline and not ("DEMO" in d.client.books and d.client.trades.get("DEMO")): time.sleep(0.05)  # the book and the tape: two subscriptions
    d.redraw()
    assert ">100<" in d.ladder.value and d.tape.value.count("<tr>") > 1
    d.bot.value, d.bot_params.value = "market_maker", "spread=two"
    d.start_bot()
    assert "spread &#x27;two&#x27;: expected a whole number from 1" in d.status.value and d.bots == {}
    d.client.cancel_all(), d.client.close()

def test_a_halted_symbol_is_said_above_its_ladder(svc):
    import json, urllib.request
    d = desk_on(svc, "tess")
    def admin(route):
        request = urllib.request.Request(f"{svc.url}admin/symbols/ZETA/{route}", data=b"", headers={"Authorization": f"Bearer {svc.keys['ada']}"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r: return json.loads(r.read())["halted"]
    try:
        d.symbol.value = "ZETA"
        d.kind.value, d.price.value, placed = "limit", "100", set(d.client.placed)
        for qty in ("1,050,000,000,000", "1,000,001"):  # past an order's limit (before: the book's 2**40, which the service refused again), past the account's
            d.qty.value = qty
            d.send()
            assert f"order: qty {qty}: expected at most 1,000,000, this account's largest order ([trading] max_order_qty)" in html.unescape(d.status.value), d.status.value
        assert d.client.placed == placed  # not sent (before: sent, and refused by the service: a rejected order in the account's list)
        d.qty.value, d.price.value = "100", "20,000,000,000"  # a limit the desk leaves to the service: price times qty
        d.send()
        assert re.search(r">order '[0-9a-f]+': risk_max_notional: price times qty 2,000,000,000,000", html.unescape(d.status.value)), d.status.value  # before: "order: order '…'"
        for route, said in (("halt", True), ("resume", False)):
            if said: d.status.say("order x: may be placed", error=True)  # an error shown as the halt comes: it stays
            assert admin(route) is said
            deadline = time.time() + 10
            while time.time() < deadline and ("halted:" in d.ladder.value) is not said:
                time.sleep(0.05)
                d.redraw()
            assert ("halted: new orders and modifies are refused" in d.ladder.value) is said  # before: a quiet ladder, as in a slow market
            assert ("order x: may be placed; then ZETA: halted by an admin" if said else "ZETA: resumed: orders are taken again") in d.status.value, d.status.value  # before: said only by an order refused, which stayed red once resumed
            if said:
                d.bot.value, d.bot_params.value = "noise_trader", ""
                d.start_bot()
                assert "noise_trader started on ZETA; ZETA is halted: it places nothing until an admin resumes it" in d.status.value, d.status.value
                d.stop_bots()
    finally: d.close()

def test_the_bots_form_offers_each_bots_own_parameters(svc):
    d = desk_on(svc, "tess")
    for name in ("noise_trader", "momentum_ma", "market_maker"):
        d.bot.value = name
        assert parse_params(d.bot_params.value) == bot_defaults(name)
    d.bot.value = "momentum_ma"
    d.start_bot()  # as offered; before, the form held "spread=2, qty=5" for every bot: "momentum_ma: unknown parameter 'spread'"
    assert "momentum_ma started on DEMO" in d.status.value, d.status.value
    d.stop_bots(), d.client.close()

def test_the_desks_pnl_follows_other_traders(svc):
    d = desk_on(svc, "ada")
    d.side.value, d.price.value, d.qty.value = "sell", "200", "3"
    d.send()
    with TradingClient(svc.url, svc.keys["tom"]) as tom, TradingClient(svc.url, svc.keys["tess"]) as tess:
        tom.order("DEMO", "buy", 3, 200)  # ada: short 3 at 200
        tom.order("DEMO", "sell", 1, 220), tess.order("DEMO", "buy", 1, 220)  # then others trade at 220
        deadline = time.time() + 10
        while time.time() < deadline and not (d.client.trades.get("DEMO") and d.client.trades["DEMO"][-1]["price"] == 220
                                              and d.client.positions.get("DEMO", {}).get("qty") == -3): time.sleep(0.05)
        d.redraw()
        assert d.client.marked("DEMO")["pnl"] == -60 and d.pnl_points[-1][1] == -60 and "<td>220</td><td>0.00</td><td>-60.00</td><td>-60.00</td>" in d.positions.value
    low, high = d.pnl_chart.layout.xaxis.range  # its few points, a moment apart: a minute around them (before: sub-millisecond ticks)
    assert (datetime.fromisoformat(str(high)) - datetime.fromisoformat(str(low))).total_seconds() == 60
    d.pnl_points = [(time.time() - 120, -1.0)]
    d.redraw()  # points two minutes apart: the axis follows them
    assert d.pnl_chart.layout.xaxis.range is None and d.pnl_chart.layout.xaxis.autorange is True
    d.client.cancel_all(), d.client.close()

@pytest.mark.parametrize("trading, said", [
    ({"shard_urls": "127.0.0.1:8765"}, "[trading] shard_urls = '127.0.0.1:8765': '127.0.0.1:8765': not an http(s) URL"),
    ({"shard_urls": "http://127.0.0.1:99999/"}, "'http://127.0.0.1:99999/': Port out of range"),
    ({"shard_urls": "http://127.0.0.1:8765/ http://127.0.0.1:8766/"}, "2 URLs: expected 1, one per shard in shard order ([trading] shards)"),
    ({"shards": 2}, "[trading] shard_urls = '': 0 URLs: expected 2, one per shard in shard order"),
    ({"port": 0}, "[trading] port = 0: the desk starts the service on a port it knows")])
def test_bad_service_urls_are_said_in_the_status_line(svc, trading, said):
    d = TradingDesk(load_settings(env={}, platform={"data_dir": svc.data}, trading=trading))
    d.key.value = svc.keys["tess"]
    d.connect()
    assert html.escape(said) in d.status.value and d.client is None, d.status.value

def test_a_bot_that_fails_to_start_is_said_so(svc, monkeypatch):
    import aiplatform.trading.bots as bots
    async def broken(self): raise RuntimeError("no quotes today")
    monkeypatch.setattr(bots.MarketMaker, "on_start", broken)
    d = desk_on(svc, "tess")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2"
    d.start_bot()
    assert "market_maker on DEMO: did not start (no quotes today)" in d.status.value, d.status.value
    d.stop_bots()
    assert "0 bots stopped" in d.status.value
    d.client.close()

def test_a_bot_that_stops_itself_says_so_in_the_status_line(svc, monkeypatch):
    "Before: the bots table alone said so; the status line still said it had started."
    import aiplatform.trading.bots as bots
    async def broken(self, book): raise RuntimeError("no book today")
    monkeypatch.setattr(bots.MarketMaker, "on_book", broken)
    d = desk_on(svc, "tess")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=500"
    d.start_bot()
    try:
        assert "market_maker started on DEMO" in d.status.value, d.status.value
        deadline = time.time() + 10
        while time.time() < deadline and any(t.running for t in d.bots.values()): time.sleep(0.05)
        d.redraw()
        assert re.search(r">market_maker DEMO #\d+ stopped: no book today<", d.status.value), d.status.value
    finally: d.client.cancel_all(), d.client.close()  # its redraw thread ends, whatever the test found

def test_a_bot_slow_to_start_is_stopped_so_that_asking_again_makes_one_bot(svc, monkeypatch):
    import aiplatform.trading.bots as bots
    monkeypatch.setattr(bots.BotThread, "wait_started", lambda self, timeout=10: False)  # as when the service answers after 10 s
    d = desk_on(svc, "tess")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=500"
    d.start_bot()
    assert "did not start (no answer in 10 s)" in d.status.value
    assert [t.running for t in d.bots.values()] == [False]  # before: it went on, and a second start made two bots
    d.stop_bots(), d.client.cancel_all(), d.client.close()

def test_a_closed_desk_stops_its_bots_redraw_and_client(svc):
    "Before: `close` closed its widgets alone; its market maker went on quoting, and its redraw thread ran for ever."
    d = desk_on(svc, "ada")
    d.symbol.value = "ZETA"
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=500"
    d.start_bot()
    assert "market_maker started on ZETA" in d.status.value, d.status.value
    with TradingClient(svc.url, svc.keys["tom"]) as tom:
        deadline = time.time() + 10
        while time.time() < deadline and not tom.depth("ZETA")["bids"]: time.sleep(0.05)
        assert tom.depth("ZETA")["bids"], "the bot quotes"
        d.close()
        assert tom.depth("ZETA") | {"seq": 0} == {"symbol": "ZETA", "seq": 0, "bids": [], "asks": []}  # its quotes cancelled
    left = lambda: [t.name for t in threading.enumerate() if t.name in ("desk-redraw", "bot-market_maker", "trading-client")]
    deadline = time.time() + 5
    while time.time() < deadline and left(): time.sleep(0.1)
    assert not left() and d.client is None

def test_a_desk_whose_key_is_revoked_says_so_where_the_ladder_was(svc):
    "Before: \"disconnected: reconnecting…\" for ever; the client only logged why its service refused it (the service closes a revoked key's connection within RECHECK_S, 10 s)."
    from aiplatform.platform import auth
    settings = load_settings(env={}, platform={"data_dir": svc.data})
    auth.add_user("rex", "trader", settings=settings)
    svc.keys["rex"] = auth.create_key("rex", settings=settings)
    d = desk_on(svc, "rex")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=700"
    d.start_bot()
    assert "market_maker started on DEMO" in d.status.value, d.status.value
    auth.revoke_key(svc.keys["rex"].split("_")[1], settings=settings)
    deadline = time.time() + 30
    while time.time() < deadline and not ("revoked" in d.ladder.value and "revoked" in d.bots_table.value):
        time.sleep(0.2)
        d.redraw()
    why = f"{svc.url}ws: API key: unknown, revoked or of a disabled user"
    assert d.ladder.value == f"<i class='aip-note'>disconnected: {why}; connect with a valid key</i>"
    assert f"disconnected: {why}; connect with a valid key" in html.unescape(d.status.value) and "reconnecting" not in d.status.value, d.status.value  # before: "reconnecting…" for ever
    assert why in d.bots_table.value  # the bot too: running, and trading nothing (was no error shown)
    d.close()
    import urllib.request  # its quotes, left by a connection that did not cancel on disconnect: gone before other tests trade DEMO
    urllib.request.urlopen(urllib.request.Request(svc.url + "orders/cancel-all?account=rex", method="POST", headers={"Authorization": f"Bearer {svc.keys['ada']}"}), timeout=30)
    with TradingClient(svc.url, svc.keys["ada"]) as ada: depth = ada.depth("DEMO")
    assert not {698, 702} & {price for side in ("bids", "asks") for price, _ in depth[side]}, depth

def test_a_desk_whose_page_went_silent_stops_its_bots(svc, monkeypatch):
    "A page gone without closing (a browser crashed, a laptop asleep): once it has not beaten for PAGE_GONE_S, its bots are stopped, their orders cancelled (before: they traded on, unseen); a desk no page shows keeps them."
    import aiplatform.trading.desk as desk
    monkeypatch.setattr(desk, "PAGE_GONE_S", 0.5)
    d = desk_on(svc, "tess")
    try:
        assert d.page.playing  # set beating at Connect
        d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=800"
        d.start_bot()
        time.sleep(1.5)  # redrawn thrice: no beat yet, nothing stopped
        def quotes():
            with TradingClient(svc.url, svc.keys["tess"]) as tess: return {798, 802} & set(tess.orders_frame(symbol="DEMO").price.dropna())
        assert [t.running for t in d.bots.values()] == [True] and quotes() == {798, 802}
        d.page.value += 1  # a beat, then silence
        deadline = time.time() + 15
        while time.time() < deadline and any(t.running for t in d.bots.values()): time.sleep(0.1)
        assert "the page sent nothing for 0.5 s (closed, asleep or offline): 1 bot stopped, their orders cancelled" in d.status.value, d.status.value
        assert not quotes()
    finally: d.close()

def test_connect_again_keeps_the_symbol_shown(svc):
    d = desk_on(svc, "tess")
    d.symbol.value = "ZETA"
    d.connect()
    assert d.symbol.value == "ZETA"  # before: back to DEMO, the first
    d.client.close()

def test_a_service_with_no_symbols_connects(svc, tmp_path):
    keys = make_users(tmp_path)
    empty = start_trading(tmp_path, symbols="", price_band_pct=0)
    try:
        empty.data, empty.keys = tmp_path, keys
        d = desk_on(empty, "tess")
        assert "connected as tess: 0 symbols" in d.status.value and d.symbol.options == ()
        frames = d.client.orders_frame(), d.client.fills_frame(), d.client.positions_frame()  # a new account's: no rows, every column
        assert [len(f) for f in frames] == [0, 0, 0] and {"cid", "status"} <= set(frames[0]) and "symbol" in frames[2] and "type" not in frames[2]  # before: the message's type, "position", a column
        assert frames[2].set_index("symbol").empty
        d.bot.value = "market_maker"
        d.start_bot()
        assert "bot: symbol: none traded yet" in d.status.value and d.bots == {}  # before: "'NoneType' object has no attribute 'encode'", and a row
        d.client.close()
    finally: stop(empty)

def test_a_desk_whose_service_is_gone_shows_no_stale_ladder(tmp_path):
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    svc.data, svc.keys = tmp_path, keys
    d = desk_on(svc, "tess")
    try:
        with TradingClient(svc.url, keys["tom"]) as tom: tom.order("DEMO", "sell", 5, 100)
        deadline = time.time() + 10
        while time.time() < deadline and not (d.client.books.get("DEMO") and d.client.books["DEMO"].depth()["asks"]): time.sleep(0.05)
        d.redraw()
        assert ">100<" in d.ladder.value
        d.bot.value, d.bot_params.value = "market_maker", "fair=100, qty=1"
        d.start_bot()
        d.redraw()
        assert "<td>running</td>" in d.bots_table.value, d.bots_table.value
        d.status.say("order x: may be placed", error=True)  # an error shown as the service goes: it stays
        stop(svc)
        deadline = time.time() + 10
        while time.time() < deadline and (d.client.connected("DEMO") or d.bots[next(iter(d.bots))].strategy.client.connected("DEMO")): time.sleep(0.05)
        d.redraw()
        assert "disconnected: reconnecting" in d.ladder.value and ">100<" not in d.ladder.value
        assert "order x: may be placed; then disconnected from the trading service" in d.status.value, d.status.value  # before: the status line still said the bot had started
        assert "<td>disconnected</td>" in d.bots_table.value, d.bots_table.value  # before: True, as if it traded
        d.stop_bots()
        d.status.say("order x: not sent", error=True)  # an error of the time it was down
        svc = start_trading(tmp_path, port=int(svc.url.rsplit(":", 1)[1].strip("/")), symbols="DEMO", price_band_pct=0)
        deadline = time.time() + 30
        while time.time() < deadline and not (d.client.connected("DEMO") and d.client.books.get("DEMO") and d.client.books["DEMO"].depth()["asks"]): time.sleep(0.05)  # its book comes after its socket opens
        d.redraw()
        assert "reconnected to the trading service" in d.status.value and ">100<" in d.ladder.value  # before: the error of the time it was down stood
    finally:
        d.close()  # its bots and client too
        stop(svc)

def test_a_symbol_left_is_no_longer_followed(svc):
    d = desk_on(svc, "tess")
    assert d.symbol.value == "DEMO"
    d.symbol.value = "ZETA"
    deadline = time.time() + 10
    while time.time() < deadline and "ZETA" not in d.client.books: time.sleep(0.05)
    assert sorted(d.client.books) == ["ZETA"] and ("book", "DEMO") not in d.client.aio._subscribed
    assert ("trades", "DEMO") in d.client.aio._subscribed  # its trades still mark a position held there
    d.client.close()

def test_a_desk_connected_with_another_key_of_the_same_account_keeps_its_bots(svc):
    from aiplatform.platform.auth import create_key
    d = desk_on(svc, "ada")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=500"
    d.start_bot()
    try:
        d.key.value = create_key("ada", settings=load_settings(env={}, platform={"data_dir": svc.data}))
        d.connect()  # ada still: before, any other key stopped her bots
        assert [t.running for t in d.bots.values()] == [True]
    finally:
        d.stop_bots(), d.client.close()

def test_a_desk_connected_as_another_account_drops_the_last_ones_bots_and_pnl_and_starts_bots_as_itself(svc):
    d = desk_on(svc, "ada")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=500"
    d.key.value = svc.keys["tom"]  # typed, not connected: the desk is still ada's
    d.start_bot()
    try:
        assert [t.strategy.client.key for t in d.bots.values()] == [svc.keys["ada"]]  # before: tom's key, the field's
        d.pnl_points = [(time.time() - 60, -60.0)]
        began = time.time()
        d.connect()  # now tom's
        assert d.bots == {} and all(t >= began for t, _ in d.pnl_points), d.pnl_points  # ada's bot stopped, her P&L points gone (tom's redraw thread may have drawn his first already)
        with TradingClient(svc.url, svc.keys["ada"]) as ada: assert ada.orders_frame(symbol="DEMO").empty
    finally:
        d.stop_bots(), d.client.close()

def test_a_bot_still_stopping_after_an_account_switch_stays_in_sight_beside_the_next(svc):
    from aiplatform.trading.bots import BotThread
    d = desk_on(svc, "ada")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=500"
    d.start_bot(), d.start_bot()
    first, slow = d.bots.values()
    slow.stop = lambda timeout=10: False  # as when the service is slow to cancel its quotes
    try:
        d.key.value = svc.keys["tom"]
        d.connect()
        assert "connected as tom: 2 symbols; the last account's 1 bot stopped, 1 still stopping" in html.unescape(d.status.value), d.status.value
        d.start_bot()  # tom's
        assert list(d.bots.values())[0] is slow and len(d.bots) == 2  # before: tom's bot took the slow one's name, and its place
    finally:
        BotThread.stop(slow), d.stop_bots(), d.client.close()
        with TradingClient(svc.url, svc.keys["ada"]) as ada: ada.cancel_all()

def test_an_account_switch_without_bots_says_nothing_of_bots(svc):
    d = desk_on(svc, "ada")
    d.key.value = svc.keys["tom"]
    d.connect()
    assert "connected as tom: 2 symbols<" in d.status.value, d.status.value  # before: "; the last account's 0 bots stopped"
    d.client.close()

def test_every_held_symbol_marks_the_pnl_and_cancels_act_on_what_the_trader_sees(tmp_path):
    keys = make_users(tmp_path)
    service = start_trading(tmp_path, symbols="DEMO ZETA", price_band_pct=0)
    service.keys, service.data = keys, tmp_path
    try:
        with TradingClient(service.url, keys["ada"]) as ada, TradingClient(service.url, keys["tom"]) as tom:
            ada.order("ZETA", "sell", 3, 200), tom.order("ZETA", "buy", 3, 200)  # ada: short 3 ZETA at 200
        d = desk_on(service, "ada")
        assert d.symbol.value == "DEMO"  # ZETA not shown
        d.redraw()  # ada holds ZETA: its trades followed from now on
        with TradingClient(service.url, keys["tom"]) as tom, TradingClient(service.url, keys["tess"]) as tess:
            tom.order("ZETA", "sell", 1, 260), tess.order("ZETA", "buy", 1, 260)  # others trade ZETA at 260
        deadline = time.time() + 10
        while time.time() < deadline and d.client.marked("ZETA")["last"] != 260: time.sleep(0.05)
        d.redraw()
        assert d.client.marked("ZETA")["pnl"] == -180 and d.pnl_points[-1][1] == -180  # before: 0, marked at ada's own last fill
        points = len(d.pnl_points)
        for _ in range(3): d.redraw()
        assert len(d.pnl_points) == points  # nothing changed, nothing drawn (before: a point every 5 s kept the kernel busy)

        d.kind.value, d.side.value, d.qty.value = "market", "buy", "1"
        d.send()  # nothing to buy on DEMO
        assert "cancelled, 0 of 1 filled (the rest cancelled: nothing more to trade with)" in d.status.value, d.status.value  # before: "(no_liquidity)", a code
        d.kind.value, d.price.value = "limit", "150.5"
        d.send()  # before: the browser's integer field sent 150, and the status line said nothing of it
        assert "price &#x27;150.5&#x27;: expected a whole number (in the symbol" in d.status.value and not d.client.orders_frame().shape[0]
        d.price.value = "150"
        d.send()
        d.price.value = "149"  # another ticket: the same one at once would be taken for a double click
        d.send()
        d.redraw()
        (label, first), (_, second) = list(d.open_orders.options)
        assert label == f"buy 1 DEMO @ 150 ({first})"  # said as a trader knows it (before: the cid alone)
        d.open_orders.value = first
        with TradingClient(service.url, keys["tom"]) as tom: tom.order("DEMO", "sell", 1, 150)  # fills the first
        deadline = time.time() + 10
        while time.time() < deadline and first in d.client.orders and d.client.orders[first]["status"] == "open": time.sleep(0.05)
        d.redraw()
        assert d.open_orders.value is None  # before: the second, which the next click on Cancel cancelled
        d.cancel()
        assert "choose an order" in d.status.value and d.client.orders[second]["status"] == "open"
        d.symbol.value = "ZETA"
        d.send()
        d.symbol.value = "DEMO"
        d.cancel_all()  # every symbol's, as My open orders lists them
        with TradingClient(service.url, keys["ada"]) as ada:
            deadline = time.time() + 10
            while time.time() < deadline and not ada.orders_frame().empty: time.sleep(0.05)
            assert ada.orders_frame().empty  # before: ZETA's stayed open
        d.client.close()
    finally: stop(service)

def test_a_symbol_an_admin_adds_is_listed_on_a_desk_connected_before(tmp_path, monkeypatch):
    "Before: listed at the next Connect only."
    import json, urllib.request
    import aiplatform.trading.desk as desk
    monkeypatch.setattr(desk, "LIST_AGAIN_S", 0.2)
    keys, svc = make_users(tmp_path), start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    d = TradingDesk(load_settings(env={}, platform={"data_dir": tmp_path}, trading={"shard_urls": svc.url}))
    try:
        d.key.value = keys["tess"]
        d.connect()
        assert list(d.symbol.options) == ["DEMO"]
        added = urllib.request.Request(svc.url + "admin/symbols", data=json.dumps({"symbol": "ACME"}).encode(), method="POST",
                                       headers={"Authorization": f"Bearer {keys['ada']}", "Content-Type": "application/json"})
        assert urllib.request.urlopen(added, timeout=30).status == 201
        deadline = time.monotonic() + 20
        while "new symbols listed" not in d.status.value and time.monotonic() < deadline: time.sleep(0.05)  # said last, once the symbol shown is back
        assert (list(d.symbol.options), d.symbol.value) == (["ACME", "DEMO"], "DEMO") and ">new symbols listed: ACME<" in d.status.value, d.status.value
    finally: d.close(), stop(svc)  # its client and threads too, whatever the test found

def test_a_desk_connects_while_a_shard_is_down_and_lists_its_symbols_once_it_is_up(tmp_path, monkeypatch):
    import aiplatform.trading.desk as desk
    from conftest import free_port
    from aiplatform.trading.market import shard_of
    monkeypatch.setattr(desk, "LIST_AGAIN_S", 0.2)
    keys, symbols = make_users(tmp_path), "DEMO ACME GOOG EURUSD"
    up, port = start_trading(tmp_path, symbols=symbols, shards=2, shard=1, price_band_pct=0, max_order_qty=50), free_port()  # each shard its own limits
    dead, later = f"http://127.0.0.1:{port}/", None  # shard 0: restarting, say
    try:
        d = TradingDesk(load_settings(env={}, platform={"data_dir": tmp_path}, trading={"shard_urls": f"{dead} {up.url}", "shards": 2}))
        d.key.value = keys["tess"]
        d.connect()  # before: "the trading service did not answer", and no desk
        assert d.client is not None and f"down: {dead} (its symbols listed once it answers)" in d.status.value, d.status.value
        assert list(d.symbol.options) == sorted(s for s in symbols.split() if shard_of(s, 2) == 1) == ["EURUSD"]
        d.kind.value, d.price.value, d.qty.value = "limit", "90", "60"
        d.send()
        assert "order: qty 60: expected at most 50, this account's largest order ([trading] max_order_qty)" in html.unescape(d.status.value), d.status.value  # EURUSD's shard's
        later = start_trading(tmp_path, symbols=symbols, shards=2, shard=0, price_band_pct=0, port=port, max_order_qty=80)
        deadline = time.monotonic() + 20
        while not (len(d.symbol.options) == 4 and "answers again" in d.status.value) and time.monotonic() < deadline: time.sleep(0.05)  # the status said last
        assert (list(d.symbol.options), d.symbol.value) == (sorted(symbols.split()), "EURUSD")  # before: listed only at the next connect
        assert f">{dead} answers again: 3 symbols listed<" in d.status.value, d.status.value
        d.symbol.value = "DEMO"  # a symbol of the shard back: its book is followed
        with TradingClient(later.url, keys["tom"]) as tom: tom.order("DEMO", "buy", 5, 99)
        while time.monotonic() < deadline and not (d.client.books.get("DEMO") and d.client.books["DEMO"].depth()["bids"]): time.sleep(0.05)
        assert d.client.books["DEMO"].depth()["bids"] == [(99, 5)]
        d.send()  # qty 60 at 90 on DEMO's shard, whose limit is 80 (before: the first shard to answer's 50 taken for every symbol)
        assert re.search(r"order [0-9a-f]+: open, 0 of 60 filled", html.unescape(d.status.value)), d.status.value
        d.qty.value = "90"
        d.send()  # read once the shard answered (before: unknown till the next Connect, the ticket sent and refused)
        assert "order: qty 90: expected at most 80, this account's largest order ([trading] max_order_qty)" in html.unescape(d.status.value), d.status.value
        d.client.close()
    finally:
        stop(up)
        if later: stop(later)

def test_a_desk_connects_and_changes_symbols_at_once_while_a_shard_hangs_and_shows_its_fills_once_it_answers(tmp_path, monkeypatch):
    import os, signal
    import aiplatform.trading.desk as desk
    from aiplatform.trading.market import shard_of
    monkeypatch.setattr(desk, "ANSWER_S", 1), monkeypatch.setattr(desk, "LIST_AGAIN_S", 0.2)
    keys, symbols = make_users(tmp_path), "DEMO ACME GOOG EURUSD ZETA"
    shards = [start_trading(tmp_path, symbols=symbols, shards=2, shard=k, price_band_pct=0) for k in (0, 1)]
    urls = [s.url for s in shards]
    try:
        assert shard_of("DEMO", 2) == 0
        with TradingClient(urls, keys["tom"]) as tom, TradingClient(urls, keys["tess"]) as tess:
            tom.order("DEMO", "sell", 3, 100), tess.order("DEMO", "buy", 3, 100, tif="IOC")
        os.kill(shards[0].proc.pid, signal.SIGSTOP)  # hung: it takes connections and answers nothing
        d = TradingDesk(load_settings(env={}, platform={"data_dir": tmp_path}, trading={"shard_urls": " ".join(urls), "shards": 2}))
        d.key.value = keys["tess"]
        began = time.monotonic()
        d.connect()
        assert time.monotonic() - began < 5 and f"down: {urls[0]}" in d.status.value, (time.monotonic() - began, d.status.value)  # before: minutes
        assert list(d.symbol.options) == ["EURUSD", "ZETA"]
        for symbol in ("ZETA", "EURUSD", "ZETA"):
            began = time.monotonic()
            d.symbol.value = symbol
            assert time.monotonic() - began < 1
        with TradingClient(urls[1], keys["tom"]) as tom: tom.order("ZETA", "buy", 5, 99)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (d.client.books.get("ZETA") and d.client.books["ZETA"].depth()["bids"]): time.sleep(0.05)
        assert d.client.books["ZETA"].depth()["bids"] == [(99, 5)]  # before: left, back and its book frozen (the subscribe went before the unsubscribe's answer)
        assert not any(f["symbol"] == "DEMO" for f in d.client.fills)
        os.kill(shards[0].proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while not any(f["symbol"] == "DEMO" for f in d.client.fills) and time.monotonic() < deadline: time.sleep(0.1)
        assert any(f["symbol"] == "DEMO" for f in d.client.fills)  # before: never, once it had not answered at the connect
        while not (len(d.symbol.options) == 5 and d.symbol.value == "ZETA") and time.monotonic() < deadline: time.sleep(0.1)  # new options choose their first, then the symbol shown is put back
        assert (list(d.symbol.options), d.symbol.value) == (sorted(symbols.split()), "ZETA")  # before: listed only at the next connect
        d.client.close()
    finally:
        os.kill(shards[0].proc.pid, signal.SIGCONT)
        for s in shards: stop(s)

def test_the_fills_panel_shows_the_fills_made_before_the_desk_connected(svc):
    with TradingClient(svc.url, svc.keys["tom"]) as tom, TradingClient(svc.url, svc.keys["ada"]) as ada:
        tom.order("ZETA", "sell", 7, 150), ada.order("ZETA", "buy", 7, 150, tif="IOC")
        tom.cancel_placed()
    d = desk_on(svc, "ada")
    d.redraw()
    assert "<td>ZETA</td><td>buy</td><td>150</td><td>7</td>" in d.fills.value  # before: only the fills made after it connected
    d.client.close()

def test_an_empty_or_mistyped_ticket_field_is_named_and_nothing_is_sent(svc):
    d = desk_on(svc, "tom")
    for price, qty, said in [("", "1", "order: price: required (a whole number"), ("100", "  ", "order: qty: required"),
                             ("100", "abc", "order: qty &#x27;abc&#x27;: expected a whole number"),
                             ("99999999999999999999", "1", "order: price 99999999999999999999: expected at most 1,099,511,627,776")]:  # was "price 1e+20", the service's float
        d.price.value, d.qty.value = price, qty
        d.send()  # before: the number boxes put their last number back in the browser, and that order went
        assert said in d.status.value, d.status.value
    assert d.client.orders_frame().empty
    d.client.close()

def test_an_order_sent_without_an_answer_is_sent_again_as_the_same_order(svc, monkeypatch):
    import aiplatform.trading.desk as desk
    monkeypatch.setattr(desk, "ANSWER_S", 1)
    proxy = Proxy(svc.url)
    d = TradingDesk(load_settings(env={}, platform={"data_dir": svc.data}, trading={"shard_urls": proxy.url}))
    d.key.value = svc.keys["ada"]
    d.connect()
    deadline = time.time() + 10
    while time.time() < deadline and not d.client.connected("DEMO"): time.sleep(0.05)  # its socket open: the connect subscribes in the background
    d.side.value, d.price.value, d.qty.value = "buy", "37", "2"
    proxy.deaf = True  # the order reaches the service, its answer never comes back
    d.send()
    assert "may be placed: sent again, this ticket is that order" in d.status.value, d.status.value
    proxy.deaf = False
    proxy.abort()  # the dead link noticed, and the connection made again
    deadline = time.time() + 10
    while time.time() < deadline and not d.client.reconnects: time.sleep(0.05)
    d.price.value = "38"
    d.send()  # another ticket between: a new order
    d.price.value = "37"
    d.send()  # the same ticket as the first: before, a second order
    assert "open, 0 of 2 filled" in d.status.value, d.status.value
    with TradingClient(svc.url, svc.keys["ada"]) as ada:
        assert sorted(ada.orders_frame(symbol="DEMO").query("price in (37, 38)")["price"]) == [37, 38]
        ada.cancel_all()
    d.price.value = "39"
    proxy.deaf = True
    d.send()  # no answer again...
    proxy.deaf, _ = False, proxy.abort()
    with TradingClient(svc.url, svc.keys["tom"]) as tom:
        tom.order("DEMO", "sell", 2, 39)  # ...and the order fills: the desk is told of it on the orders channel
        deadline = time.time() + 10
        while time.time() < deadline and not any(o["price"] == 39 and o["status"] == "filled" for o in d.client.orders.values()): time.sleep(0.05)
        d.send()  # the same ticket, the first done: how it ended, and nothing sent (an IOC's second send was a second order)
        assert "sent without an answer: filled, 2 of 2 filled; send again for a new order" in d.status.value, d.status.value
        d.send()  # at once, as a double click's second click: nothing sent either
        assert "sent without an answer: filled, 2 of 2 filled; send again for a new order; the same ticket again within 0.5 s" in d.status.value, d.status.value
        time.sleep(desk.DOUBLE_CLICK_S)
        d.send()  # then a new order (before: its id again, answered "filled", and no order placed)
        assert "open, 0 of 2 filled" in d.status.value, d.status.value
        tom.cancel_all()
    with TradingClient(svc.url, svc.keys["ada"]) as ada: ada.cancel_all()
    proxy.gateway_down = True  # first: the abort below is scheduled at once
    proxy.abort()  # a new connection answered 502: the order cannot be handed to one
    deadline = time.time() + 10
    while time.time() < deadline and d.client.connected("DEMO"): time.sleep(0.05)
    d.price.value = "40"
    d.send()
    assert re.search(r"order [0-9a-f]+: not sent: the trading service did not answer", d.status.value) and "may be placed" not in d.status.value, d.status.value  # before: "may be placed"; then the outcome last
    assert not d._unanswered
    d.client.close()

def test_an_address_that_is_not_the_service_is_said_in_the_status_line(svc):
    page = http.server.HTTPServer(("127.0.0.1", 0), type("Page", (http.server.BaseHTTPRequestHandler,), {"do_GET": lambda self: (
        self.send_response(200), self.end_headers(), self.wfile.write(b"<html>login</html>")), "log_message": lambda *a: None}))
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        d = TradingDesk(load_settings(env={}, platform={"data_dir": svc.data}, trading={"shard_urls": f"http://127.0.0.1:{page.server_port}/"}))
        d.key.value = svc.keys["tess"]
        d.connect()  # before: a ValueError out of the click handler, and an empty status line
        assert "not the trading service" in d.status.value and d.client is None, d.status.value
    finally: page.shutdown()

def test_a_viewer_gets_the_ladder_and_the_tape_without_the_ticket_or_the_bots(svc):
    with TradingClient(svc.url, svc.keys["tom"]) as tom:
        tom.order("DEMO", "sell", 2, 333)
        d = desk_on(svc, "vic")  # before: "connect: user 'vic' (role viewer): market data only", and no desk
        assert "connected as vic: 2 symbols; viewer: market data only" in d.status.value and d.trading.children == tuple(d.market_panels), d.status.value
        deadline = time.time() + 10
        while time.time() < deadline and "DEMO" not in d.client.books: time.sleep(0.05)
        d.redraw()
        assert ">333<" in d.ladder.value
        tom.cancel_placed()
    d.client.close()

def test_one_bot_is_stopped_from_the_list_and_stopped_ones_do_not_pile_up(svc, monkeypatch):
    import aiplatform.trading.desk as desk
    monkeypatch.setattr(desk, "KEEP_STOPPED", 2)
    d = desk_on(svc, "tess")
    d.bot.value, d.bot_params.value = "market_maker", "spread=2, qty=1, fair=900, refresh_s=30"
    d.start_bot()
    d.redraw()
    assert d.running_bots.value == d.running_bots.options[0]  # the one running, chosen (before: none, and Stop said to choose it)
    d.start_bot()
    d.redraw()
    first, second = d.running_bots.options
    d.running_bots.value = second
    d.stop_bot()  # before: only "Stop bots", every one
    d.redraw()
    assert f"{second}: stopped" in d.status.value and d.running_bots.options == (first,) and d.running_bots.value is None
    for _ in range(3):
        d.start_bot()
        d.bots[list(d.bots)[-1]].stop()
    d.start_bot()
    assert sum(not t.running for t in d.bots.values()) == 2  # the oldest stopped ones gone (before: every one kept, its client's orders too)
    d.stop_bots(), d.client.cancel_all(), d.client.close()

def test_a_service_the_desk_starts_that_stops_at_once_is_said_with_its_error(tmp_path, monkeypatch):
    "Bad [trading] symbols: the service it starts exits at once; its own words come back within seconds (were lost, and the desk waited 60 s)."
    import socket
    from aiplatform.core import AIPlatformError
    from aiplatform.trading.desk import service_urls
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in (("PLATFORM__DATA_DIR", tmp_path), ("TRADING__PORT", port), ("TRADING__SYMBOLS", "DEMO demo")):
        monkeypatch.setenv(f"AIPLATFORM_{key}", str(value))  # the service's settings, as the desk's: the same environment
    started = time.monotonic()
    with pytest.raises(AIPlatformError, match=r"trading service: stopped \(exit code 2\) before answering at .*\[trading\] symbols = 'DEMO demo': symbol 'demo'"):
        service_urls(load_settings())
    assert time.monotonic() - started < 30 and (tmp_path/"trading"/"service.log").exists()

def test_a_service_whose_folder_was_deleted_says_why_at_health_and_the_desk_starts_no_second_one(tmp_path, monkeypatch):
    "Up but refusing every order: its /health answered 200, and a desk took it for a service to use (now 503 with the reason, said by the desk)."
    import json, urllib.error, urllib.request
    from aiplatform.core import AIPlatformError
    from aiplatform.platform.services import check_health
    from aiplatform.trading.desk import service_urls
    make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO")
    try:
        assert check_health(svc.url + "health")["ok"]
        (tmp_path/"trading"/"shard-0").rename(tmp_path/"deleted")  # as good as deleted: no restart looks there
        with pytest.raises(urllib.error.HTTPError) as answer: urllib.request.urlopen(svc.url + "health", timeout=30)
        body = json.loads(answer.value.read())
        assert answer.value.code == 503 and body["status"] == "failing" and "was deleted or replaced" in body["error"]
        schema = json.loads(urllib.request.urlopen(svc.url + "openapi.json", timeout=30).read())["paths"]["/health"]["get"]["responses"]["503"]
        assert set(schema["content"]["application/json"]["schema"]["required"]) == set(body)
        for key, value in (("PLATFORM__DATA_DIR", tmp_path), ("TRADING__PORT", svc.url.rstrip("/").rsplit(":", 1)[1])):
            monkeypatch.setenv(f"AIPLATFORM_{key}", str(value))
        with pytest.raises(AIPlatformError, match=r"trading service at http://127\.0\.0\.1:\d+/: HTTP 503: not journaled: the shard's folder .* was deleted"):
            service_urls(load_settings())
        assert not (tmp_path/"trading"/"service.log").exists()  # no second service tried
    finally: stop(svc)

def test_a_desk_follows_positions_though_its_orders_subscribe_fails_at_connect(svc, monkeypatch):
    from aiplatform.trading.client import AsyncTradingClient
    real = AsyncTradingClient.subscribe
    async def subscribe(self, channel, symbol=None, wait=None):
        if channel == "orders": raise ConnectionError("a gateway flapping: 502")  # not now
        return await real(self, channel, symbol, wait)
    monkeypatch.setattr(AsyncTradingClient, "subscribe", subscribe)
    d = desk_on(svc, "tess")
    try: assert ("positions", None) in d.client.aio._subscribed, d.status.value  # before: never subscribed once the orders' subscribe failed
    finally: d.client.close()

def test_the_ticket_sends_stop_orders_and_opens_only_the_boxes_an_order_type_takes(svc):
    "Before: limit and market only, a market order's price box open (typed, and not used), a stop order shown as a plain one and the rest past 20 left out unsaid (a Desk reviewer's)."
    d = desk_on(svc, "tom")
    try:
        d.symbol.value = "ZETA"
        d.kind.value = "market"
        assert (d.price.disabled, d.stop_price.disabled) == (True, True)
        d.kind.value, d.side.value, d.qty.value = "stop", "buy", "2"
        assert (d.price.disabled, d.stop_price.disabled) == (True, False)
        d.stop_price.value = ""
        d.send()
        assert "stop price: required (a whole number" in d.status.value and not d.client.orders_frame(symbol="ZETA").shape[0]
        d.stop_price.value = "9,000"
        d.send()
        d.kind.value, d.price.value, d.stop_price.value = "stop_limit", "9,100", "9,050"
        assert (d.price.disabled, d.stop_price.disabled) == (False, False)
        d.send()
        placed = d.client.orders_frame(symbol="ZETA")
        assert sorted(zip(placed.kind, placed.price.astype(object).where(placed.price.notna(), None), placed.stop_price)) == [("stop", None, 9_000), ("stop_limit", 9_100, 9_050)]
        d.kind.value, d.price.value = "limit", "1"
        for k in range(20): d.qty.value = str(k + 1); d.send()  # each another ticket: not a double click
        d.redraw()
        assert "the newest 20 of 22" in d.orders.value and "<th>kind</th><th>price</th><th>stop_price</th>" in d.orders.value
        d.client.cancel_all()
    finally: d.client.close()

def test_the_tape_and_fills_say_when_and_a_flat_position_no_average_price(svc):
    "Before: no time on the tape or the fills, and a position closed showed an average price of 0.00 (a Desk reviewer's)."
    import json, re, urllib.request
    request = urllib.request.Request(f"{svc.url}admin/symbols", data=json.dumps({"symbol": "WHEN", "price_band_pct": 0}).encode(),
                                     headers={"Authorization": f"Bearer {svc.keys['ada']}", "Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()  # a symbol of its own: the module's other tests hold positions elsewhere
    d = desk_on(svc, "ada")
    try:
        d.symbol.value = "WHEN"
        with TradingClient(svc.url, svc.keys["tom"]) as tom:
            tom.order("WHEN", "sell", 1, 300), d.client.order("WHEN", "buy", 1, 300)
            tom.order("WHEN", "buy", 1, 310), d.client.order("WHEN", "sell", 1, 310)  # ada flat again, 10 made
        deadline = time.time() + 10
        while time.time() < deadline and (d.client.positions.get("WHEN") or {}).get("realized") != 10: time.sleep(0.05)
        d.redraw()
        assert re.search(r"<th>time</th><th>price</th>.*<td>\d\d:\d\d:\d\d</td><td>310</td>", d.tape.value) and "<th>time</th><th>symbol</th>" in d.fills.value
        assert "<td>WHEN</td><td>0</td><td></td><td>310</td><td>10.00</td>" in d.positions.value, d.positions.value
    finally: d.client.close()

def test_a_double_click_on_send_places_one_order_and_a_later_click_another(svc):
    "Before: a double click placed two orders."
    from aiplatform.trading.desk import DOUBLE_CLICK_S
    d = desk_on(svc, "tess")
    try:
        d.symbol.value, d.kind.value, d.side.value, d.price.value, d.qty.value = "DEMO", "limit", "buy", "41", "1"
        before = set(d.client.placed)
        d.send(), d.send()  # a double click's two clicks, the second as soon as the first is answered
        assert len(d.client.placed - before) == 1 and re.search(r"order [0-9a-f]+: open, 0 of 1 filled; the same ticket again within 0.5 s \(a double click\?\) placed nothing", html.unescape(d.status.value)), d.status.value  # before: "not sent" in place of the order's answer
        time.sleep(DOUBLE_CLICK_S)
        d.send()
        assert len(d.client.placed - before) == 2 and re.search(r"order [0-9a-f]+: open", d.status.value), d.status.value
    finally: d.client.cancel_all(), d.close()  # the module's other tests meet none of its orders, whatever it found
