"""The built-in bots trading against a real service: a market maker quoting with inventory skew, a noise trader from
the order-flow generator and an MA momentum bot make a market together; each one's P&L and position are live; a bot
stopped leaves no open order; replay streams a generated session at N× speed; a bot runs as its own process."""
import asyncio, contextlib, dataclasses, json, os, re, signal, socket, subprocess, sys, threading, time, urllib.request
import numpy as np
import pytest
from aiplatform.core import NotFound, ValidationError
from trading_service import Proxy, make_users, start_trading, stop
from aiplatform.trading.bots import BotThread, MarketMaker, MomentumMA, NoiseTrader, Strategy, _session, journal_session, replay, run
from aiplatform.trading.book import OP_CANCEL, OrderBook
from aiplatform.trading.client import AsyncTradingClient, OrderRejected, TradingClient
from aiplatform.trading.data import order_flow

def _service(tmp_path_factory, name, **trading):
    "A trading service with `[trading]` settings `trading`, its users' keys, and its data folder; stopped after the module."
    data = tmp_path_factory.mktemp(name)
    keys = make_users(data)
    svc = start_trading(data, **trading)
    svc.keys, svc.data = keys, data
    yield svc
    stop(svc)

@pytest.fixture(scope="module")
def market(tmp_path_factory): yield from _service(tmp_path_factory, "bots", symbols="DEMO SIM", price_band_pct=0, max_order_qty=50)

@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    "A service whose notional limit refuses every order the bots here place: each bot starts (its sizes within max_order_qty), then is refused."
    yield from _service(tmp_path_factory, "tight", symbols="SIM BIG", price_band_pct=0, max_notional=1_000)

def test_three_bots_make_a_market(market):
    maker = BotThread(MarketMaker("DEMO", spread=2, qty=5, refresh_s=0.5, max_inventory=20, fair=10_000), market.url, market.keys["tess"])
    noise = BotThread(NoiseTrader("DEMO", rate=40, spread=6, max_qty=8, fair=10_000, seed=1), market.url, market.keys["tom"])
    momentum = BotThread(MomentumMA("DEMO", fast=2, slow=5, qty=3, max_position=9, interval_s=0.1), market.url, market.keys["ada"])
    try:
        assert all(bot.wait_started() for bot in (maker, noise, momentum)), (maker.error, noise.error, momentum.error)
        deadline = time.time() + 20
        while time.time() < deadline and not (maker.strategy.client.fills and len(maker.strategy.pnl_history) > 1 and momentum.strategy.prices): time.sleep(0.1)
        assert maker.running and noise.running and momentum.running, (maker.error, noise.error, momentum.error)
        assert len(maker.strategy.client.fills) > 0 and len(maker.strategy.pnl_history) > 1  # it traded, its P&L followed
        assert maker.strategy.fills and {f["cid"] for f in maker.strategy.fills} <= maker.strategy.client.placed  # its own fills
        assert abs(maker.strategy.position) <= 20 + 2 * 5  # the skew keeps inventory near its limit
        assert momentum.strategy.prices and momentum.strategy.signal in (-1, 0, 1)
    finally:
        for bot in (maker, noise, momentum): bot.stop()
    p, last = maker.strategy.client.positions["DEMO"], maker.strategy.client.trades["DEMO"][-1]["price"]
    assert maker.strategy.pnl == pytest.approx(p["realized"] + (last - p["avg_price"]) * p["qty"])  # at the last trade
    with TradingClient(market.url, market.keys["tess"]) as tess:
        assert tess.orders_frame(symbol="DEMO").empty  # a stopped bot leaves no open order
        positions = tess.positions_frame().set_index("symbol")
        assert "type" not in positions  # the message's, the same in each row
        assert positions.loc["DEMO", "qty"] == maker.strategy.position

def test_a_bots_pnl_and_mid_follow_other_traders(market):
    bot = BotThread(Strategy("SIM"), market.url, market.keys["tess"])
    try:
        assert bot.wait_started(), bot.error  # live from now on (a loaded machine once started it after the trades below)
        with TradingClient(market.url, market.keys["tess"]) as tess, TradingClient(market.url, market.keys["tom"]) as tom, \
             TradingClient(market.url, market.keys["ada"]) as ada:
            tom.order("SIM", "sell", 10, 100), tess.order("SIM", "buy", 10, 100)  # the bot's account: long 10 at 100
            ada.order("SIM", "sell", 1, 120), tom.order("SIM", "buy", 1, 120)  # others trade at 120
            ada.order("SIM", "buy", 1, 90)  # a bid alone in the book
            deadline = time.time() + 10
            while bot.strategy.pnl != 200 and time.time() < deadline: time.sleep(0.05)
            assert (bot.strategy.pnl, bot.strategy.position, bot.strategy.pnl_history[-1][1:]) == (200, 10, (200, 10))
            assert bot.strategy.mid() == 120  # where it last traded, not the bid that is left
            ada.cancel_all()
    finally: bot.stop()

def admin(market, path, body=None):
    "POST `body` to the admin route `path` as the admin."
    urllib.request.urlopen(urllib.request.Request(market.url + path, data=json.dumps(body or {}).encode(), method="POST",
                           headers={"Authorization": f"Bearer {market.keys['ada']}", "Content-Type": "application/json"}), timeout=30)

def add_symbol(market, **spec): admin(market, "admin/symbols", spec | {"price_band_pct": 0})

def test_on_a_quiet_book_a_market_maker_quotes_again_and_momentum_samples(market):
    "Both on the runner's timer; before, on the book's changes alone: quotes refused by a halt never came once it ended, and a quiet book gave one sample."
    add_symbol(market, symbol="QUIET")
    admin(market, "admin/symbols/QUIET/halt")
    maker, momentum = BotThread(MarketMaker("QUIET", spread=2, qty=5, refresh_s=0.3, fair=500), market.url, market.keys["tess"]), None
    try:
        assert maker.wait_started(), maker.error
        assert not maker.strategy.quotes  # refused: halted
        admin(market, "admin/symbols/QUIET/resume")
        deadline = time.time() + 10
        while len(maker.strategy.quotes) < 2 and time.time() < deadline: time.sleep(0.05)
        assert sorted(maker.strategy.quotes.values()) == [("buy", 0), ("sell", 0)]
        quotes = dict(maker.strategy.quotes)
        momentum = BotThread(MomentumMA("QUIET", fast=2, slow=5, qty=3, interval_s=0.1), market.url, market.keys["ada"])  # once both quotes stand: a
        assert momentum.wait_started(), momentum.error  # sample between the maker's bid and its ask (a slow host) moved its signal, and it traded
        time.sleep(1)  # nothing changes the book now: the maker's refreshes keep its quotes (before: it walked them down a side at a time)
        assert maker.strategy.quotes == quotes and len(momentum.strategy.prices) == 5 and set(momentum.strategy.prices) == {500}
    finally:
        for bot in (maker, momentum):
            if bot: bot.stop()

class SlowTimer(Strategy):
    "Counts the trades it was told; its timer waits 0.3 s, as for an order's answer from far away, and notes how many trades the client held but had not told it."
    async def on_start(self): self.told, self.untold = 0, []
    async def on_trade(self, trade): self.told += 1
    async def on_timer(self):
        self.untold.append(len(self.client.trades.get(self.symbol, ())) - self.told)
        await asyncio.sleep(0.3)

def test_a_bot_whose_timer_waits_is_told_all_that_came_before_its_next_timer(market):
    "Before: one message a timer, ever further behind (of 20 trades, 5 told, and 15 held untold at the last timer); a momentum bot read a position holding fills it was not told of, and bought past its max_position."
    add_symbol(market, symbol="BUSY")
    bot = BotThread(SlowTimer("BUSY"), market.url, market.keys["ada"])
    with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["tess"]) as tess:
        try:
            assert bot.wait_started(), bot.error
            for k in range(20):
                tom.order("BUSY", "sell", 1, 100), tess.order("BUSY", "buy", 1, 100)
                time.sleep(0.05)
            time.sleep(0.8)
            assert bot.strategy.told == 20 and set(bot.strategy.untold) == {0}, bot.strategy.untold  # each timer told all before it
        finally: bot.stop()

def _most_held_as_the_mid_rises(bot, tom, symbol) -> int:
    "Step `tom`'s bids up under the ask for 3 s (a rising mid); the most `bot` held meanwhile."
    most = 0
    for k in range(30):
        tom.order(symbol, "buy", 1, 9_991 + k)
        time.sleep(0.1)
        most = max(most, bot.strategy.position)
    return most

def test_momentum_whose_order_answer_is_lost_trades_again_only_once_in_sync(market):
    "Its market order filled, the answer lost with the connection: before, a sample once the new connection opened (its position not yet read again) bought again, to 20 past a max_position of 10."
    add_symbol(market, symbol="LOST")
    proxy = Proxy(market.url)
    proxy.delay = 0.12
    with TradingClient(market.url, market.keys["ada"]) as ada, TradingClient(market.url, market.keys["tom"]) as tom:
        ada.order("LOST", "sell", 1, 10_045), tom.order("LOST", "buy", 1, 10_045)  # a trade on the tape: a mid while the book is gone
        tom.order("LOST", "sell", 50, 10_050), tom.order("LOST", "buy", 1, 9_990)
        bot = BotThread(MomentumMA("LOST", fast=2, slow=3, qty=10, max_position=10, interval_s=0.1), proxy.url, market.keys["tess"])
        try:
            assert bot.wait_started(), bot.error
            proxy.cut(from_service=True, holding=b'"kind":"market"')  # the answer to its first market order
            most = _most_held_as_the_mid_rises(bot, tom, "LOST")
            time.sleep(1.5)
            assert proxy._cut is None and bot.strategy.client.reconnects >= 1  # the answer was lost, and the bot reconnected
            assert max(most, bot.strategy.position) == 10 and not bot.strategy.unseen
        finally:
            bot.stop(), tom.cancel_all()

class Stopped(Strategy):
    "Stops its runner (`stop`) as it is told its third trade, and notes any hook run after that; each trade's hook awaits 20 ms, its timer 0.3 s."
    async def on_start(self): self.told, self.after_stop = 0, []
    async def on_trade(self, trade):
        if self.stop.is_set(): self.after_stop.append("on_trade")
        self.told += 1
        if self.told == 3: self.stop.set()
        await asyncio.sleep(0.02)
    async def on_timer(self):
        if self.stop.is_set(): self.after_stop.append("on_timer")
        await asyncio.sleep(0.3)

def test_a_stop_set_while_the_runner_tells_what_waited_ends_the_run_there(market):
    "Before: the runner told what waited (for up to TIMER_S) and then ran on_timer, a market order for a momentum bot, after the stop."
    add_symbol(market, symbol="HALT")
    s = Stopped("HALT")
    async def scenario():
        s.stop = asyncio.Event()
        task = asyncio.create_task(run(s, market.url, market.keys["ada"], stop=s.stop))
        while not s.started.is_set(): await asyncio.sleep(0.01)
        def burst():  # while its timer waits: told after it
            with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["tess"]) as tess:
                for k in range(20): tom.order("HALT", "sell", 1, 100), tess.order("HALT", "buy", 1, 100)
        await asyncio.to_thread(burst)
        async with asyncio.timeout(5): await task
    asyncio.run(scenario())
    assert s.told == 3 and s.after_stop == [], (s.told, s.after_stop)

def test_momentum_counts_the_fills_its_answer_told_before_its_position_came(market):
    "A market order's answer comes a frame before its fills and the position: the service 120 ms away, the next sample bought again on the old position (20 past a max_position of 10)."
    add_symbol(market, symbol="RISE")
    proxy = Proxy(market.url)
    proxy.delay = 0.12
    with TradingClient(market.url, market.keys["tom"]) as tom:
        tom.order("RISE", "sell", 50, 10_050), tom.order("RISE", "buy", 1, 9_990)
        bot = BotThread(MomentumMA("RISE", fast=2, slow=3, qty=10, max_position=10, interval_s=0.1), proxy.url, market.keys["tess"])
        try:
            assert bot.wait_started(), bot.error
            most = _most_held_as_the_mid_rises(bot, tom, "RISE")
            time.sleep(1)
            assert max(most, bot.strategy.position) == 10 and not bot.strategy.unseen  # up to its limit, and no further
        finally:
            bot.stop(), tom.cancel_all()

def test_a_noise_trader_stopped_mid_round_leaves_nothing_open_when_its_position_is_read(market, monkeypatch):
    "Before: its round was cancelled but not waited for, so orders it had sent unanswered were unknown to the runner's cancel and stood (and could fill) until the client closed."
    import aiplatform.trading.bots as bots
    add_symbol(market, symbol="NOISY")
    seen, real = [], bots._last_position
    async def read(strategy):  # where the runner reads the bot's last position: just after it cancelled the bot's orders
        async with AsyncTradingClient(market.url, market.keys["ada"]) as other:
            seen.append(len((await other.get("orders", 0, status="open", symbol="NOISY", limit=1000))["orders"]))
        return await real(strategy)
    monkeypatch.setattr(bots, "_last_position", read)
    for k in range(4):
        bot = BotThread(NoiseTrader("NOISY", rate=3000, spread=6, max_qty=8, fair=5000, seed=k, cancel=0.0, marketable=0.0), market.url, market.keys["ada"])  # not tom: the replay test's budget of orders
        assert bot.wait_started(), bot.error
        time.sleep(0.4 + 0.07 * k)
        assert bot.stop()
    assert seen == [0, 0, 0, 0]

def test_a_failure_in_the_last_turn_stops_the_run_with_it(market):
    "Before: the run ended at its deadline as if nothing had gone wrong, and a command line or a report said it succeeded."
    class Refused(Strategy):
        async def on_timer(self):
            await asyncio.sleep(1)  # past the run's end (its second counts its connect too: a slow one leaves less than a second)
            self.refused(ValidationError("qty 10: expected at most 5"), n=20)
    with pytest.raises(ValidationError, match="20 orders in a row refused, none placed; the last: qty 10"):
        asyncio.run(run(Refused("DEMO"), market.url, market.keys["tess"], seconds=1))

def test_bots_keep_to_a_symbols_ticks_and_lots(market):
    add_symbol(market, symbol="GRID", tick_size=5, lot_size=10)
    odd = BotThread(MarketMaker("GRID", qty=25, fair=1_003), market.url, market.keys["tess"])
    assert not odd.wait_started() and str(odd.error) == "qty 25: expected a multiple of GRID's lot size 10"  # before: 20 a side, silently
    none = BotThread(MarketMaker("GRID", qty=10, max_inventory=5, fair=1_003), market.url, market.keys["tess"])  # room for no lot: before, it ran quoting nothing
    assert not none.wait_started() and str(none.error) == "market_maker's largest order, 0 (max_inventory): expected at least GRID's lot size 10: it would place nothing", none.error
    add_symbol(market, symbol="BLOCK", lot_size=40)
    big = BotThread(NoiseTrader("BLOCK", max_qty=130, fair=1_000), market.url, market.keys["tom"])  # up to 3 lots: 120, past max_order_qty 50
    assert not big.wait_started() and str(big.error) == ("noise_trader's largest order, 120 (max_qty 130 in BLOCK's lots of 40): expected at most 50, "
                                                         "the account's max_order_qty ([trading] max_order_qty): each such order would be refused"), big.error
    maker = BotThread(MarketMaker("GRID", spread=3, qty=20, fair=1_003), market.url, market.keys["tess"])
    noise = BotThread(NoiseTrader("GRID", rate=40, spread=6, max_qty=30, fair=1_003, seed=0), market.url, market.keys["tom"])
    try:
        assert maker.wait_started() and noise.wait_started(), (maker.error, noise.error)
        deadline = time.time() + 20
        while time.time() < deadline and not (maker.strategy.quotes and noise.strategy.client.orders): time.sleep(0.1)
        assert maker.running and noise.running, (maker.error, noise.error)
        quotes = [maker.strategy.client.orders[cid] for cid in maker.strategy.quotes]
        assert quotes and all(o["price"] % 5 == 0 and o["qty"] % 10 == 0 for o in quotes), quotes
        assert noise.strategy.client.orders and all(o["qty"] % 10 == 0 for o in noise.strategy.client.orders.values())
    finally:
        for bot in (maker, noise): bot.stop()

def test_a_noise_trader_quotes_in_ticks_either_side_and_leaves_no_old_rounds_open(market):
    add_symbol(market, symbol="NOIS", tick_size=100)
    noise = BotThread(NoiseTrader("NOIS", rate=400, spread=10, max_qty=5, fair=100_000, seed=5, stp="cancel_newest"), market.url, market.keys["tom"])
    try:
        assert noise.wait_started(), noise.error
        time.sleep(3)  # some six rounds of 200 commands
        assert noise.running, noise.error
        orders = list(noise.strategy.client.orders.values())
        rounds = {o["cid"].split("-")[0] for o in orders if o["status"] == "open"}
    finally: noise.stop()
    assert len(rounds) <= 2, rounds  # this round's and the last one's: before, every round's leftovers stayed for ever
    sides = [f["fill_id"].rpartition(":")[0] for f in noise.strategy.fills]
    assert len(set(sides)) == len(sides)  # stp cancel_newest: no trade with itself (alone on its symbol, each trade was one)
    limits = {side: sorted(o["price"] for o in orders if o["kind"] == "limit" and o["side"] == side) for side in ("buy", "sell")}
    assert all(p % 100 == 0 for p in limits["buy"] + limits["sell"])
    assert limits["sell"][len(limits["sell"]) // 2] - limits["buy"][len(limits["buy"]) // 2] >= 500  # spread 10 ticks: before, 10 price units, floored to ticks

def test_a_noise_trader_whose_flow_fails_stops_with_the_error(market, monkeypatch):
    import aiplatform.trading.bots as bots
    monkeypatch.setattr(bots, "order_flow", lambda *a, **k: 1 / 0)
    noise = BotThread(NoiseTrader("SIM", fair=5_000), market.url, market.keys["tom"])
    deadline = time.time() + 10
    while noise.running and time.time() < deadline: time.sleep(0.1)
    assert not noise.running and isinstance(noise.error, ZeroDivisionError)

def test_a_stopped_bot_cancels_its_orders_not_the_accounts_others(market):
    with TradingClient(market.url, market.keys["ada"]) as ada:
        ada.order("SIM", "buy", 1, 1, cid="by-hand")  # far below: no quote of the bot takes it
        maker = BotThread(MarketMaker("SIM", spread=2, qty=5, fair=5_000), market.url, market.keys["ada"])  # the same account
        assert maker.wait_started(), maker.error
        maker.stop()  # its orders cancelled; this client hears of it a moment later
        deadline = time.time() + 10
        while list(ada.orders_frame(symbol="SIM").cid) != ["by-hand"] and time.time() < deadline: time.sleep(0.05)
        assert list(ada.orders_frame(symbol="SIM").cid) == ["by-hand"]
        ada.cancel_all()

def test_a_bot_whose_start_fails_still_stops_cleanly(market):
    class Broken(Strategy):
        stopped = False
        async def on_start(self): raise RuntimeError("no quotes today")
        async def on_stop(self): Broken.stopped = True
    bot = BotThread(Broken("SIM"), market.url, market.keys["tom"])
    assert not bot.wait_started() and str(bot.error) == "no quotes today" and Broken.stopped

def test_a_market_maker_past_the_rate_limit_goes_on(tmp_path):
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0, rate=5, burst=10)
    try:
        maker = BotThread(MarketMaker("DEMO", spread=2, qty=5, refresh_s=0.05, fair=1_000), svc.url, keys["tess"])
        with TradingClient(svc.url, keys["tom"]) as tom:
            for i in range(12):  # the book moves 4 times a second: the maker requotes, four messages a time, past 5 a second
                tom.order("DEMO", "buy", 1, 800 - i)
                time.sleep(0.25)
            assert maker.running and maker.error is None, maker.error
            maker.stop()
            tom.cancel_all()
    finally: stop(svc)

def test_a_market_makers_spread_is_in_ticks(market):
    add_symbol(market, symbol="FIVES", tick_size=5)
    maker = BotThread(MarketMaker("FIVES", spread=3, qty=1, fair=1_000), market.url, market.keys["tess"])
    try:
        assert maker.wait_started(), maker.error
        assert sorted(maker.strategy.client.orders[cid]["price"] for cid in maker.strategy.quotes) == [985, 1_015]  # 3 ticks of 5 each side
    finally: maker.stop()

def test_replay_refuses_a_speed_that_is_not_a_finite_number_above_0():
    for speed in (float("nan"), float("inf"), 0, -1):
        with pytest.raises(ValidationError, match=f"speed {speed!r}: expected a finite number above 0"):
            asyncio.run(replay(None, "DEMO", np.array([0]), [], speed=speed))
    assert asyncio.run(replay(None, "DEMO", np.array([], np.int64), order_flow(0)[1], speed=np.float64(2.0))) == {
        "sent": 0, "acked": 0, "rejected": 0, "rate_limited": 0, "behind_s": 0.0, "first_refusal": None, "last_refusal": None}  # a NumPy number is one
    assert Strategy("DEMO").pnl_history.maxlen == 10_000  # a bot's P&L points: its newest, not one for every trade since it began
    for speed, said in ((10**400, "speed 1000.*: expected a finite number above 0"),  # before: OverflowError
                        (True, "speed True: expected a finite number above 0")):
        with pytest.raises(ValidationError, match=said): asyncio.run(replay(None, "DEMO", np.array([0]), [], speed=speed))
    with pytest.raises(ValidationError, match="^commands: 1 of them, expected one for each of the 2 times$"):  # before: IndexError
        asyncio.run(replay(None, "DEMO", np.array([0, 1]), order_flow(1, seed=0)[1]))

def test_replay_refuses_a_session_whose_every_order_the_service_would_refuse_before_sending_any():
    "Before: each order sent and refused (a lower-case symbol, a price shifted below 1, a cid too long), or a traceback (a list of times: AttributeError; a DataFrame: KeyError)."
    times, commands = order_flow(5, mid=100, spread=6, seed=0)
    unsorted = times.copy()
    unsorted[2] = unsorted[1] - 1
    for args, said in ((("demo", times, commands), "symbol 'demo': expected 1 to 16 capitals"),
                       (("DEMO", times, list(commands)), "commands: expected an array of engine commands .* got list"),
                       (("DEMO", times.astype(float), commands), "times_ns: expected whole nanoseconds, one a command; got float64"),
                       (("DEMO", unsorted, commands), "times_ns: expected in order; time 2 is before the one before it"),
                       (("DEMO", times, commands, 1.0, -1000), "offset -1,000: moves the session's prices, 9[0-9] to 10[0-9], out of 1 to "),
                       (("DEMO", times, commands, 1.0, 1.5), "offset 1.5: expected a whole number of price units"),
                       (("DEMO", times, commands, 1.0, 0, "x" * 40), "prefix 'x{40}': with the session's order ids, up to 5, a client order id must be 1 to 36")):
        with pytest.raises(ValidationError, match=said): asyncio.run(replay(None, *args))
    assert _session("DEMO", times.tolist(), commands, 0, "p-") == (times.tolist(), 0)  # a list of times is one
    with pytest.raises(ValidationError, match="times_ns: expected in order; time 2 is before"): _session("DEMO", unsorted.astype(np.uint64), commands, 0, "p-")  # unsigned: no wrapping diff
    assert _session("DEMO", times, commands, np.int64(2), "p-") == (times.tolist(), 2)  # a NumPy integer is an offset too

def test_a_journal_session_from_a_folder_above_the_books_names_them(market):
    books = market.data/"trading"/"shard-0"/"books"
    with pytest.raises(ValidationError, match=r"no book's journal here \(a book's journal: <data>/trading/shard-N/books/<symbol>\); its books: .*DEMO"):
        journal_session(books)  # before: an empty session, replaying nothing

def test_a_replay_into_a_symbol_not_traded_says_so(market):
    times, commands = order_flow(20, seed=0)
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tom"]) as c:
            with pytest.raises(NotFound, match="^symbol 'NOSUCH': not traded"):  # before: every command refused, and the last refusal a cancel's "no such client order id"
                await replay(c, "NOSUCH", times, commands, speed=100)
    asyncio.run(main())

def test_a_trade_of_a_bot_with_itself_moves_its_own_position_no_more_than_the_accounts():
    bot = Strategy("DEMO")
    bot.took({"fill_id": "DEMO:3:t", "side": "buy", "qty": 5, "price": 100, "ns": 1})
    before = dataclasses.replace(bot.own)
    for fill_id, side in (("DEMO:8:t", "buy"), ("DEMO:8:m", "sell")):  # its buy took its own ask: the engine moves no position for it
        bot.took({"fill_id": fill_id, "side": side, "qty": 2, "price": 105, "ns": 2})
    assert bot.own == before and len(bot.fills) == 3  # before: long 7 at 101.43 then 2 sold, 7.14 realised; the account's: 5 at 100, none
    bot.took({"fill_id": "DEMO:9:m", "side": "sell", "qty": 1, "price": 110, "ns": 3})
    assert (bot.own.qty, bot.own.realized) == (4, 10)

def test_times_and_rates_must_be_finite_and_a_journal_folder_must_be_there(tmp_path):
    inf = float("inf")
    for make, said in ((lambda: MarketMaker("DEMO", refresh_s=inf), "refresh_s inf: expected seconds above 0"),  # before: never requoted
                       (lambda: MomentumMA("DEMO", interval_s=inf), "interval_s inf: expected seconds above 0"),  # before: never traded
                       (lambda: NoiseTrader("DEMO", rate=inf), "rate inf: expected orders a second from 0.01 to 10,000"),  # before: every round at once
                       (lambda: journal_session(tmp_path, rate=float("nan")), "rate nan: expected commands a second from 0.01 to 1,000,000"),
                       (lambda: journal_session(tmp_path/"typo"), "not a folder"),  # before: an empty session, replaying nothing
                       (lambda: MarketMaker("DEMO", refresh_s=10**400), "refresh_s 1000.*: expected seconds above 0, at most 86,400"),  # before: OverflowError
                       (lambda: NoiseTrader("DEMO", rate=1e-300), "rate 1e-300: expected orders a second from 0.01"),  # before: its times overflowed
                       (lambda: NoiseTrader("DEMO", max_qty=1 << 63), "max_qty 9223372036854775808: expected a whole number from 1 to 1,073,741,824"),  # before: a NumPy error once running
                       (lambda: MomentumMA("DEMO", slow=10**12), "slow 1000000000000: expected whole numbers, 1 <= fast < slow <= 10,000"),  # before: its prices grew for ever
                       (lambda: NoiseTrader("DEMO", stp="never"), "stp .never.: expected one of cancel_newest, cancel_oldest, cancel_both .self-trade prevention, per account., or none")):
        with pytest.raises(ValidationError, match=said): make()

def test_replay_streams_a_generated_session_at_n_times_speed(market):
    times, commands = order_flow(300, mid=5_000, spread=10, rate=100.0, max_qty=40, seed=3)  # 3 s of flow
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tom"]) as c:
            start = time.perf_counter()
            counts = await replay(c, "SIM", times, commands, speed=10)
            took = time.perf_counter() - start
            await c.cancel_all("SIM")
            return counts, took, await c.get("trades/SIM")
    counts, took, tape = asyncio.run(main())
    assert counts["sent"] == 300 and counts["acked"] > 250
    assert 0.25 < took < 3  # ~0.3 s of a 3 s session at 10x
    assert tape["trades"]

def test_replay_keeps_the_pace_of_a_fast_session_and_stops_at_once(market):
    add_symbol(market, symbol="FAST")
    times, commands = order_flow(6_000, mid=5_000, spread=10, rate=6_000.0, max_qty=40, seed=4)  # 1 s of flow, 0.25 s at 4x
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tom"]) as c:
            frames, requests = [], c.requests
            async def counted(messages, *args, **kwargs):
                frames.append(len(messages))
                return await requests(messages, *args, **kwargs)
            c.requests = counted
            start = time.perf_counter()
            counts = await replay(c, "FAST", times, commands, speed=4)
            took = time.perf_counter() - start
            del c.requests
            depth = await c.depth("FAST", 1_000)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.2, stop.set)
            start = time.perf_counter()
            stopped = await replay(c, "FAST", np.array([0, 5_000_000_000]), commands[:2], stop=stop)  # 5 s apart
            await c.cancel_all("FAST")
            return counts, took, frames, depth, stopped, time.perf_counter() - start
    counts, took, frames, depth, stopped, waited = asyncio.run(main())
    # past the connection's burst of 5,000 the rest waits for the rate limit (2,000 a second): about half a second more (none on a host too busy to send faster)
    assert counts["sent"] == counts["acked"] + counts["rejected"] == 6_000 and counts["rate_limited"] < 6_000, counts
    assert len(frames) < 600 and took < 5 and 0.1 < counts["behind_s"] < 5, (counts, took, len(frames))  # before: a frame an order, 1.6 s at 4x here (an idle host sends smaller frames more often: 279 seen)
    book = OrderBook()  # the session played straight into a book, by one account as the replay plays it
    rows = commands.copy()
    rows["user"] = 0
    book.process(rows)
    assert {side: [tuple(level) for level in levels] for side, levels in depth.items() if side in ("bids", "asks")} == book.depth(1_000)  # before: the refused 1,000 missing
    assert stopped["sent"] == 1 and waited < 1  # before: the whole 5 s wait, then one more order

def test_the_risk_limits_apply_to_bots(market):
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tom"]) as c:
            return await replay(c, "SIM", times[:1], commands[:1], prefix="risk")
    times, commands = order_flow(1, max_qty=1, seed=0)
    commands["qty"] = 60  # above [trading] max_order_qty = 50 here
    assert asyncio.run(main())["rejected"] == 1

def test_a_replay_tells_its_first_refusal_the_cause_of_the_others(market):
    "Before: only the last, the cancel's of an order refused, not why the order was."
    times, commands = order_flow(1, max_qty=1, seed=0)
    commands["qty"] = 60  # above [trading] max_order_qty = 50 here
    cancel = commands.copy()
    cancel["op"], cancel["qty"], cancel["price"] = OP_CANCEL, 0, 0
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tom"]) as c:
            return await replay(c, "SIM", np.array([0, 1]), np.concatenate([commands, cancel]))
    counts = asyncio.run(main())
    assert counts["rejected"] == 2 and type(counts["first_refusal"]).__name__ == "OrderRejected" and "max_order_qty" in str(counts["first_refusal"]), counts
    assert str(counts["last_refusal"]).endswith("already rejected (risk_max_order_qty)"), counts  # the cancel's

def test_a_market_maker_goes_on_through_a_dropped_connection(market):
    add_symbol(market, symbol="DROP")
    proxy = Proxy(market.url)
    bot = BotThread(MarketMaker("DROP", spread=2, qty=5, refresh_s=0.01, fair=1_000), proxy.url, market.keys["tess"])
    try:
        assert bot.wait_started(), bot.error
        with TradingClient(market.url, market.keys["tom"]) as tom:
            proxy.cut(skip=1)  # at the next requote: the cancel of its ask passes, the new ask is lost with the connection
            time.sleep(0.05)
            tom.order("DROP", "buy", 1, 1_002)  # takes a lot of the maker's ask: it requotes that side
            for _ in range(50):
                if bot.strategy.client.reconnects: break
                time.sleep(0.1)
            time.sleep(0.5)
            assert bot.strategy.client.reconnects and bot.running and bot.error is None, bot.error  # before: stopped by the ConnectionError
            tom.cancel_all("DROP")
    finally: assert bot.stop()

class Busy(Strategy):  # a hook that waits a minute (on a slow service, say)
    async def on_book(self, book): await asyncio.sleep(60)

def test_stop_ends_a_bot_whose_hook_is_busy(market):
    bot = BotThread(Busy("SIM"), market.url, market.keys["ada"])
    assert bot.wait_started(), bot.error
    time.sleep(0.3)  # its first book: the hook now waits
    began = time.monotonic()
    assert bot.stop(timeout=5) and not bot.running and time.monotonic() - began < 5  # before: stop returned after 5 s, the bot still running

@contextlib.contextmanager
def _killed(proc):
    "Kill `proc` on the way out, should the test fail before it ends: no bot outlives its test."
    try: yield proc
    finally:
        if proc.poll() is None: proc.kill(), proc.wait()

def _key_file(path, key, mode=0o600):
    path.write_text(key)
    os.chmod(path, mode)
    return path

def test_a_bot_runs_as_its_own_process(market, tmp_path):
    _key_file(tmp_path/"key", market.keys["tess"])
    read, write = os.pipe()  # the key through a pipe, as `--key-file <(pass show bot-key)` gives it (before: "expected a regular file")
    os.write(write, market.keys["tess"].encode()), os.close(write)
    done = subprocess.run([sys.executable, "-m", "aiplatform.trading.bots", "market_maker", "--symbol", "SIM", "--url", market.url,
                           "--key-file", f"/dev/fd/{read}", "--set", "spread=3", "--set", "fair=5000", "--seconds", "2"],
                          capture_output=True, text=True, timeout=60, pass_fds=[read])
    os.close(read)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("market_maker on SIM: position ")
    bad = subprocess.run([sys.executable, "-m", "aiplatform.trading.bots", "market_maker", "--symbol", "SIM", "--url", market.url,
                          "--key-file", tmp_path/"key", "--set", "width=3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "market_maker: unknown parameter 'width'" in bad.stderr

def test_the_bots_command_line_answers_a_mistake_in_one_line(market, tmp_path, capsys):
    "Exit 2 for what the command line was given, 1 for what the service refused; before, a traceback (and a key file others may read, or seconds below zero, ran)."
    from aiplatform.trading.bots import main
    def refused(*args, symbol="SIM", url=market.url):
        with pytest.raises(SystemExit) as e: main(["market_maker", "--symbol", symbol, "--url", url, *map(str, args)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return e.value.code, err.strip().splitlines()[-1]
    assert refused("--key-file", _key_file(tmp_path/"open", "k", 0o644)) == (2, f"python -m aiplatform.trading.bots: error: key file {tmp_path}/open: "
                                                                             f"readable by others (mode 644); expected 600: chmod 600 {tmp_path}/open")
    assert refused("--key-file", tmp_path)[1].endswith("expected a regular file, not a folder")
    assert refused("--key-file", tmp_path/"missing")[1].endswith("missing: No such file or directory")  # before: a traceback
    assert refused("--key-file", _key_file(tmp_path/"two", "k1\nk2"))[1].endswith("expected one API key, alone")
    assert refused("--key-file", _key_file(tmp_path/"key", market.keys["tess"]), "--set", "width=3")[1].endswith("market_maker: unknown parameter 'width' (expected spread, qty, refresh_s, max_inventory, target, fair, bid_spread, ask_spread, order_levels, level_spread, level_qty, filled_order_delay, price_ceiling, price_floor)")
    for seconds in ("-5", "nan"):
        assert refused("--key-file", tmp_path/"key", "--seconds", seconds)[1].endswith(f"argument --seconds: '{seconds}': expected a number of seconds above 0")
    code, said = refused("--key-file", tmp_path/"key", symbol="NOPE")
    assert code == 1 and said.startswith("python -m aiplatform.trading.bots: symbol 'NOPE': not traded; symbols: DEMO"), said  # and those the module's tests added
    assert refused("--key-file", tmp_path/"key", url="localhost:8080")[1].startswith("python -m aiplatform.trading.bots: --url localhost:8080: not the trading service (")  # no scheme
    assert refused("--key-file", tmp_path/"key", "--set", "spread=3", "--set", "spread=4")[1].endswith("error: --set spread: given twice; expected once")  # before: 4, silently
    assert refused("--key-file", tmp_path/"key", "--url", market.url) == (1, f"python -m aiplatform.trading.bots: urls: 2 given, and {market.url} is shard 0 of 1: "
                                                                          "expected every shard's URL, in shard order")  # before: taken
    with pytest.raises(SystemExit): main(["market_maker", "--symbol", "SIM", "--url", market.url, "--key-file", str(tmp_path/"missing")])
    assert capsys.readouterr().err.count("\n") == 1  # the mistake alone, not the usage before it

@pytest.mark.parametrize("sig, ignored", [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)])
def test_ctrl_c_or_sigterm_stops_the_bots_process_with_its_summary_and_its_orders_cancelled(market, tmp_path, sig, ignored):
    "`ignored`: started with SIGINT ignored, as a shell's `&` starts a job (before: the SIGINT was lost, the bot ran on)."
    add_symbol(market, symbol=(symbol := f"STOP{int(sig)}{'I' * ignored}"))
    bot = subprocess.Popen([sys.executable, "-m", "aiplatform.trading.bots", "market_maker", "--symbol", symbol, "--url", market.url,
                            "--key-file", _key_file(tmp_path/"key", market.keys["tom"]), "--set", "fair=700", "--set", "qty=2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None)
    with TradingClient(market.url, market.keys["tom"]) as tom, _killed(bot):
        deadline = time.time() + 60
        while len(tom.orders_frame(symbol=symbol)) < 2 and time.time() < deadline: time.sleep(0.1)  # quoting
        assert len(tom.orders_frame(symbol=symbol)) == 2
        bot.send_signal(sig)
        out, err = bot.communicate(timeout=30)
        assert (bot.returncode, out, "Traceback" in err) == (0, f"market_maker on {symbol}: position 0, P&L 0.00\n", False), err  # before: -2, a traceback, nothing said; SIGTERM: -15, nothing said; a Ctrl-C that met a book update was lost (3.11's wait_for)
        assert tom.orders_frame(symbol=symbol).empty

def test_a_bot_stopped_by_refusals_says_so_in_a_line_after_its_summary(tight, tmp_path):
    "Before: a traceback, and no summary of where it ended."
    done = subprocess.run([sys.executable, "-m", "aiplatform.trading.bots", "market_maker", "--symbol", "BIG", "--url", tight.url,
                           "--key-file", _key_file(tmp_path/"key", tight.keys["tom"]), "--set", "fair=700", "--set", "qty=5", "--set", "refresh_s=0.1"],  # 3,500 past max_notional 1,000; quoting again at once (20 refusals: 10 rounds)
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, "Traceback" in done.stderr) == (1, "market_maker on BIG: position 0, P&L 0.00\n", False), done.stderr
    *logged, said = done.stderr.splitlines()
    assert re.fullmatch("python -m aiplatform.trading.bots: market_maker on BIG: 20 orders in a row refused, none placed; the last: order '[0-9a-f]+': "
                        r"risk_max_notional: .+: expected a price times qty of at most 1,000 \(\[trading\] max_notional\)", said), done.stderr  # said once, last
    timed = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO aiplatform\.trading\.bots: market_maker on BIG: order '[0-9a-f]+': risk_max_notional: "
    assert sum(bool(re.match(timed, line)) for line in logged) >= 20, done.stderr  # each refusal logged, with its time (before: none shown)

def test_a_bot_process_whose_service_is_gone_where_it_ends_says_its_figures_are_as_last_known(tmp_path):
    "Before: exit 0 and the figures of before the service went, a batch's stale figures taken for its result."
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    try:
        bot = subprocess.Popen([sys.executable, "-m", "aiplatform.trading.bots", "market_maker", "--symbol", "DEMO", "--url", svc.url, "--key-file",
                                _key_file(tmp_path/"key", keys["tom"]), "--set", "fair=700", "--seconds", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with _killed(bot), TradingClient(svc.url, keys["tess"]) as tess:
            deadline = time.time() + 60
            while not len(tess.depth("DEMO")["bids"]) and time.time() < deadline: time.sleep(0.1)  # quoting
            stop(svc)
            bot.send_signal(signal.SIGTERM)
            out, err = bot.communicate(timeout=60)
        assert (bot.returncode, out) == (1, "market_maker on DEMO: position 0, P&L 0.00\n"), err
        assert re.search(r"market_maker on DEMO: its position not read where it ended \(.+\): the figures above are as last known\n$", err), err
    finally: stop(svc)

def test_a_sigterm_while_the_bot_is_still_connecting_ends_it_at_once(tmp_path):
    "Before: it waited out the connection (30 s against a service that never answers), then traded, then stopped: past a supervisor's grace (docker stop: 10 s)."
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        bot = subprocess.Popen([sys.executable, "-m", "aiplatform.trading.bots", "market_maker", "--symbol", "SIM", "--url", f"http://127.0.0.1:{silent.getsockname()[1]}/",
                                "--key-file", _key_file(tmp_path/"key", "k")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with _killed(bot):
            silent.settimeout(60)
            held, _ = silent.accept()  # connecting, its SIGTERM handler set (before: a 3 s sleep, and a loaded host's bot still importing was killed by the default handler)
            sent = time.monotonic()
            bot.send_signal(signal.SIGTERM)
            out, err = bot.communicate(timeout=30)
            assert (bot.returncode, out, "Traceback" in err) == (0, "market_maker on SIM: position 0, P&L 0.00\n", False), err
            assert time.monotonic() - sent < 5
            held.close()

def test_the_bots_main_in_process_keeps_the_callers_sigterm_handler_and_runs_off_the_main_thread(market, tmp_path):
    from aiplatform.trading.bots import main
    add_symbol(market, symbol="INPROC")
    args = ["market_maker", "--symbol", "INPROC", "--url", market.url, "--key-file", str(_key_file(tmp_path/"key", market.keys["tom"])),
            "--set", "fair=700", "--seconds", "1"]  # its connect counts: a loaded host's may take a good part of a second
    mine = lambda *a: None
    before = signal.signal(signal.SIGTERM, mine)
    try:
        main(args)
        assert signal.getsignal(signal.SIGTERM) is mine  # before: the default, the process ended at the next SIGTERM
    finally: signal.signal(signal.SIGTERM, before)
    ended = []
    thread = threading.Thread(target=lambda: (main(args), ended.append(True)))
    thread.start(), thread.join(30)
    assert ended == [True]  # before: RuntimeError, a signal handler set off the main thread

def test_a_bot_runs_as_a_papermill_report(market, tmp_path):
    from aiplatform.jobs.reports import run_report
    _key_file(tmp_path/"key", market.keys["tom"])
    result = run_report("bot_session", {"bot": "noise_trader", "symbol": "SIM", "params": {"rate": 30, "fair": 5000, "seed": 2},
                                        "seconds": 3.5, "key_file": str(tmp_path/"key"), "urls": [market.url]}, out_dir=tmp_path/"out")  # before: a whole number only
    page = (tmp_path/"out"/"bot_session.html").read_text()
    assert "noise_trader" in page and "fills; the account" in page and "P&amp;L and position" in page, result
    with pytest.raises(Exception, match="seconds -5: expected a number of seconds above 0"):  # before: it ran, for no time at all
        run_report("bot_session", {"bot": "noise_trader", "symbol": "SIM", "seconds": -5, "key_file": str(tmp_path/"key"), "urls": [market.url]},
                   out_dir=tmp_path/"bad")
    with pytest.raises(Exception, match="key_file 'key': expected an absolute path or ~/…: the report runs in its own output folder"):
        run_report("bot_session", {"bot": "noise_trader", "symbol": "SIM", "key_file": "key", "urls": [market.url]}, out_dir=tmp_path/"rel")  # before: "No such file", the folder unsaid

def test_a_bot_report_stopped_by_an_error_keeps_its_figures_and_starts_no_service(tight, tmp_path, monkeypatch):
    "Before: the notebook stopped at the error, its figures never drawn; and with no urls it started a trading service of its own, which outlived it."
    import nbformat
    from aiplatform.jobs.reports import run_report
    _key_file(tmp_path/"key", tight.keys["tom"])
    with pytest.raises(Exception, match="failed with ValidationError: market_maker on SIM: 20 orders in a row refused"):
        run_report("bot_session", {"bot": "market_maker", "symbol": "SIM", "params": {"qty": 5, "fair": 700, "refresh_s": 0.1}, "seconds": 30,  # past max_notional 1,000; quoting again at once
                                   "key_file": str(tmp_path/"key"), "urls": [tight.url]}, out_dir=tmp_path/"out")
    text = json.dumps(nbformat.read(tmp_path/"out"/"bot_session.ipynb", 4).cells)
    assert "Stopped by an error" in text and "0 fills; the account" in text and "plotly" in text
    with socket.create_server(("127.0.0.1", 0)) as s: port = s.getsockname()[1]  # free now
    monkeypatch.setenv("AIPLATFORM_TRADING__PORT", str(port))
    with pytest.raises(Exception, match="failed with"):
        run_report("bot_session", {"bot": "noise_trader", "symbol": "SIM", "seconds": 1, "key_file": str(tmp_path/"key")}, out_dir=tmp_path/"none")
    with pytest.raises(ConnectionRefusedError): socket.create_connection(("127.0.0.1", port), timeout=5).close()  # no service started there

def test_a_recorded_session_from_a_journal_that_snapshots_have_pruned(tmp_path):
    from aiplatform.trading.journal import JournaledBook
    jb = JournaledBook.open(tmp_path, snapshot_every=500)  # four snapshots: the first commands' segments are gone
    commands = order_flow(2_000, seed=1)[1]
    for i in range(0, 2_000, 100): jb.process(commands[i:i + 100], keep_events=False)
    jb.close()
    times, kept = journal_session(tmp_path, rate=1_000)
    assert 0 < len(kept) < 2_000 and (kept == commands[-len(kept):]).all() and times[1] == 1_000_000

def test_a_replayed_modify_moves_a_stop_as_recorded():
    "A journal's modify of a stop sends its new stop price (before: left out, a stop-only modify was refused, one with a limit moved the limit alone)."
    from aiplatform.trading.bots import _message
    from aiplatform.trading.book import COMMAND_DTYPE, modify_fields
    c = np.array([modify_fields(7, 104, None, 1, 103)], COMMAND_DTYPE)[0]
    assert _message(c, "DEMO", "r-7", 10) == {"op": "modify", "cid": "r-7", "price": 114, "stop_price": 113}

def test_a_replay_sends_each_modify_of_a_stop_in_a_frame_of_its_own(market):
    "A trailing stop recorded as three modifies due at once: a frame each, answered before the next (before: one frame, whose second and third modifies a stop refuses, 409)."
    from aiplatform.trading.book import COMMAND_DTYPE, modify_fields, submit_fields
    commands = np.array([submit_fields(1, "sell", None, 1, 1, kind="stop", stop_price=1)] + [modify_fields(1, None, None, 1, p) for p in (2, 3, 4)], COMMAND_DTYPE)
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tom"]) as c:
            counts = await replay(c, "DEMO", np.zeros(4, np.int64), commands, prefix="trail-")
            state = await c.get("orders/trail-1")
            await c.cancel("trail-1")
            return counts, state
    counts, state = asyncio.run(main())
    assert (counts["acked"], counts["rejected"], state["stop_price"]) == (4, 0, 4)

def test_replay_of_a_recorded_session(market):
    times, commands = journal_session(market.data/"trading"/"shard-0"/"books"/"SIM", rate=2_000)  # what the tests above traded
    assert len(commands) > 300
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(AsyncTradingClient(market.url, market.keys[name])) for name in ("tess", "tom", "ada")]
            accounts = {(await c.get("me"))["account"]: c for c in clients}  # each recorded account's orders through its own: its stp as recorded
            counts = await replay(clients[-1], "DEMO", times, commands, speed=1, prefix="rec", accounts=accounts)
            for c in clients: await c.cancel_all("DEMO")
            return counts
    counts = asyncio.run(main())
    assert counts["sent"] == len(commands) and counts["acked"] > len(commands) // 2

def test_a_recorded_session_of_two_accounts_replays_each_under_its_own(market):
    "Two accounts kept off self-trades (stp): through one client their orders would be kept from trading with each other (before: sent, a tape of none, each cross cancelled as self_trade and counted as acked); each through its own, the tape as recorded."
    add_symbol(market, symbol="REC2"), add_symbol(market, symbol="REP2")
    tape = lambda c, symbol: c.get(f"trades/{symbol}")
    async def main():
        async with AsyncTradingClient(market.url, market.keys["tess"]) as tess, AsyncTradingClient(market.url, market.keys["tom"]) as tom:
            for c, side, qty, price in [(tess, "sell", 5, 101), (tom, "buy", 2, 101), (tom, "sell", 3, 103), (tom, "buy", 4, 103)]:  # the last takes 3 of tess's, then meets tom's own sell
                await c.order("REC2", side, qty, price, stp="cancel_newest")
            times, commands = journal_session(market.data/"trading"/"shard-0"/"books"/"REC2")
            accounts = {(await c.get("me"))["account"]: c for c in (tess, tom)}
            assert sorted(set(commands["user"].tolist())) == sorted(accounts)
            refused = r"commands: 4 orders with self-trade prevention \(stp\) of recorded accounts \d+, \d+ would be one service account's"
            with pytest.raises(ValidationError, match=refused): await replay(tess, "REP2", times, commands)
            async with AsyncTradingClient(market.url, market.keys["tess"]) as tess2:  # another client of tess's account: one account in the service still
                with pytest.raises(ValidationError, match=refused): await replay(tess, "REP2", times, commands, accounts=dict(zip(accounts, (tess, tess2))))
            with pytest.raises(ValidationError, match=r"accounts: '2': expected a recorded account's id, a whole number \(the session's: \d+, \d+\)"):
                await replay(tess, "REP2", times, commands, accounts={"2": tom})
            counts = await replay(tess, "REP2", times, commands, accounts=accounts)
            recorded, replayed = await tape(tess, "REC2"), await tape(tess, "REP2")
            for c in (tess, tom): await c.cancel_all("REC2"), await c.cancel_all("REP2")
            return counts, recorded["trades"], replayed["trades"]
    counts, recorded, replayed = asyncio.run(main())
    assert (counts["acked"], counts["rejected"]) == (4, 0)
    assert [(t["price"], t["qty"], t["side"]) for t in replayed] == [(t["price"], t["qty"], t["side"]) for t in recorded] == [(101, 2, "buy"), (101, 3, "buy")]

@pytest.mark.parametrize("other", ["down", "hung"])
def test_a_bot_starts_and_quotes_while_another_shard_is_down_or_hung(tmp_path, other):
    import socket
    from conftest import free_port
    from aiplatform.trading.market import shard_of
    keys, symbols = make_users(tmp_path), "DEMO ACME GOOG EURUSD"
    mine = next(s for s in symbols.split() if shard_of(s, 2) == 1)
    service = start_trading(tmp_path, symbols=symbols, shards=2, shard=1, price_band_pct=0)
    hung = socket.socket()  # connections wait in its backlog, never answered: a shard stalled (SIGSTOP, a host gone quiet)
    hung.bind(("127.0.0.1", 0)), hung.listen()
    other_url = f"http://127.0.0.1:{free_port() if other == 'down' else hung.getsockname()[1]}/"
    bot = BotThread(MarketMaker(mine, fair=1_000), [other_url, service.url], keys["tess"])
    try:
        assert bot.wait_started(5), bot.error  # before: run() asked every shard for its symbols, and subscribed on every one (hung: 30 s)
        with TradingClient(service.url, keys["tom"]) as tom:
            depth = tom.depth(mine)
            assert (depth["bids"][0][0], depth["asks"][0][0]) == (998, 1_002)  # its quotes, at fair ± spread 2
    finally:
        bot.stop()
        stop(service)
        hung.close()

def test_bots_go_on_after_a_gateway_answered_502_while_the_service_restarted(market):
    proxy = Proxy(market.url)
    noise = BotThread(NoiseTrader("SIM", rate=50, spread=6, max_qty=8, fair=5_000, seed=3), proxy.url, market.keys["tom"])
    momentum = BotThread(MomentumMA("SIM", fast=2, slow=3, qty=5, max_position=10, interval_s=0.1), proxy.url, market.keys["ada"])
    try:
        assert noise.wait_started(10) and momentum.wait_started(10), (noise.error, momentum.error)
        proxy.gateway_down = True
        proxy.abort()  # the connections cut, and each new one answered 502 for a while
        time.sleep(1.5)
        proxy.gateway_down = False
        placed = len(noise.strategy.client.placed)
        time.sleep(2)
        assert noise.running and momentum.running, (noise.error, momentum.error)  # before: both stopped by the 502 ("backend down")
        assert len(noise.strategy.client.placed) > placed  # trading again
    finally:
        for bot in (noise, momentum): bot.stop()

@pytest.mark.parametrize("bot", [lambda: MarketMaker("SIM", spread=2, qty=5, refresh_s=0.05, max_inventory=100, fair=5_000),
                                 lambda: NoiseTrader("SIM", rate=4_000, spread=6, max_qty=5, marketable=0, fair=5_000, seed=3)])
def test_a_bot_whose_orders_are_all_refused_stops_and_says_why(tight, bot):
    thread = BotThread(bot(), tight.url, tight.keys["tess"])  # orders above the service's max_notional of 1,000
    deadline = time.time() + 15
    while thread.running and time.time() < deadline: time.sleep(0.05)
    assert not thread.running, "still running"  # before: running, quiet, trading nothing
    assert "orders in a row refused, none placed; the last: " in str(thread.error) and "max_notional" in str(thread.error), thread.error

@pytest.mark.parametrize("bot, said", [
    (lambda: MarketMaker("SIM", qty=30, order_levels=2, level_qty=25, fair=500), "market_maker's largest order, 55 (qty + 1 × level_qty)"),  # its second level's
    (lambda: MomentumMA("SIM", qty=60, max_position=120), "momentum_ma's largest order, 60 (qty)"),
    (lambda: NoiseTrader("SIM", max_qty=51, fair=500), "noise_trader's largest order, 51 (max_qty)")], ids=["maker", "momentum", "noise"])
def test_a_bot_whose_orders_are_past_the_accounts_largest_is_refused_at_its_start(market, bot, said):
    "Before: it started, placed nothing, and 20 refusals later (ten seconds of a market maker's) it stopped."
    thread = BotThread(bot(), market.url, market.keys["tess"])
    assert not thread.wait_started() and str(thread.error) == (
        f"{said}: expected at most 50, the account's max_order_qty ([trading] max_order_qty): each such order would be refused"), thread.error
    assert not thread.strategy.client.placed  # no order sent

def test_a_bots_own_position_is_its_own_fills_not_the_accounts(market):
    add_symbol(market, symbol="OWN")
    makers = [BotThread(MarketMaker("OWN", spread=2, qty=5, refresh_s=30, max_inventory=100, fair=700), market.url, market.keys["ada"]) for _ in range(2)]
    try:
        assert all(m.wait_started() for m in makers), [m.error for m in makers]
        with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["ada"]) as ada:
            held = lambda: ada.positions_frame().set_index("symbol").qty.get("OWN", 0)
            before = held()
            tom.order("OWN", "buy", 5, 702, tif="IOC")  # takes one maker's ask: the account is short 5, that maker alone
            deadline = time.time() + 10
            while sum(m.strategy.own.qty for m in makers) != -5 and time.time() < deadline: time.sleep(0.05)
            assert sorted(m.strategy.own.qty for m in makers) == [-5, 0] and held() - before == -5  # before: both bots showed the account's -5
            assert [m.strategy.own_pnl for m in makers] == [0.0, 0.0]  # marked at the last trade, its own price
    finally:
        for m in makers: m.stop()

def test_a_fill_that_comes_as_a_bot_stops_counts_in_its_own_position(market):
    add_symbol(market, symbol="STOPS")
    with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["ada"]) as ada:
        held = lambda: ada.positions_frame().set_index("symbol").qty.get("STOPS", 0)
        for _ in range(3):  # the fill races the stop: before, about one round in three left it out of the bot's own position
            before = held()
            bot = BotThread(MarketMaker("STOPS", spread=2, qty=1, fair=100, refresh_s=60), market.url, market.keys["ada"])
            assert bot.wait_started(), bot.error
            hit = threading.Thread(target=tom.order, args=("STOPS", "buy", 1), kwargs=dict(kind="market", tif="IOC"))
            hit.start(), time.sleep(0.002), bot.stop(), hit.join()
            assert bot.strategy.own.qty == held() - before  # the bot was the account's only trader in STOPS

def test_a_fill_a_catch_up_tells_late_counts_in_the_bots_own_position_though_it_stops_first(market):
    add_symbol(market, symbol="LATE")
    proxy = Proxy(market.url)
    async def main():
        bot, halt = Strategy("LATE"), asyncio.Event()
        running = asyncio.create_task(run(bot, [proxy.url], market.keys["tess"], stop=halt))
        while not bot.started.is_set(): await asyncio.sleep(0.05)
        c = bot.client
        async with AsyncTradingClient(market.url, market.keys["tom"]) as tom:
            get, stalled = c.get, []
            async def slow_catch_up_fills(path, *args, **kwargs):
                if path == "fills" and "symbol" not in kwargs and not stalled:  # the reconnect's catch-up of fills: slow
                    stalled.append(path)
                    await c.order("LATE", "buy", 1, 51, cid="C")
                    await tom.order("LATE", "sell", 1, 51)  # a newer fill, told live
                    while not any(f["cid"] == "C" for f in bot.fills): await asyncio.sleep(0.02)
                    halt.set()  # the bot stops before the catch-up tells it A's older fill
                    await asyncio.sleep(1)
                return await get(path, *args, **kwargs)
            c.get = slow_catch_up_fills
            await c.order("LATE", "buy", 1, 50, cid="A")
            await c.request("ping")
            proxy.cut(from_service=True)  # A's fill lost with the connection
            await tom.order("LATE", "sell", 1, 50)
            await running
        return bot.own.qty
    assert asyncio.run(asyncio.wait_for(main(), 30)) == 2  # before: 1, A's fill left out

def open_quotes(client, symbol, remaining=False) -> list:
    "The account's open orders in `symbol`, as the service lists them: (side, price), and what remains of each if asked, sorted."
    return sorted((r.side, r.price, r.remaining)[:3 if remaining else 2] for r in client.orders_frame(symbol=symbol).itertuples() if r.status == "open")

def test_a_market_maker_quotes_around_what_others_quote_not_around_its_own_quotes(market):
    """Others quote 9990 / 10011: Hummingbot's quotes 2 ticks out are 9998 / 10003, and stay (before: its new bid, in the
    book before its new ask, moved the mid it quoted around, and it walked off a side at a time, in 7 starts of 8)."""
    add_symbol(market, symbol="WIDE")
    with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["tess"]) as tess:
        tom.order("WIDE", "buy", 5, 9990), tom.order("WIDE", "sell", 5, 10011)
        for _ in range(3):
            maker = BotThread(MarketMaker("WIDE", spread=2, qty=10, refresh_s=5.0), market.url, market.keys["tess"])
            try:
                assert maker.wait_started(), maker.error
                time.sleep(0.5)
                live = open_quotes(tess, "WIDE")
            finally: maker.stop()
            assert live == [("buy", 9998), ("sell", 10003)], live
        tom.cancel_all()

def test_a_market_makers_partly_filled_bid_replaced_where_it_was(market):
    "With `fair` set and no one else quoting, its quotes stay at fair ± spread after a fill (before: its own fill, the last trade, became the mid)."
    add_symbol(market, symbol="PART")
    maker = BotThread(MarketMaker("PART", spread=2, qty=10, refresh_s=5.0, fair=10_000), market.url, market.keys["tess"])
    try:
        assert maker.wait_started(), maker.error
        with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["tess"]) as tess:
            assert tom.order("PART", "sell", 4, 9998, tif="IOC")["status"] == "filled"
            time.sleep(0.5)
            live = open_quotes(tess, "PART")
    finally: maker.stop()
    assert live == [("buy", 9998), ("sell", 10002)], live

def test_ma_signal_is_0_where_the_two_means_are_equal():
    "Rounding made a tie +1 or -1 (the mids are half ticks): a flat market no crossing."
    from aiplatform.trading.bots import ma_signal
    assert ma_signal([10001.0, 10000.0, 10001.5, 9999.5, 9998.5, 10000.5, 10002.5], 3, 7) == 0  # both 10000.5; rounded, 10000.500000000002

def test_an_error_in_on_stop_hides_no_earlier_error_and_skips_no_clean_up(market):
    class Failing(MarketMaker):
        async def on_timer(self): raise RuntimeError("the real failure")
        async def on_stop(self): raise KeyError("clean-up failed")
    bot = BotThread(Failing("DEMO", spread=2, qty=1, fair=100), market.url, market.keys["tess"])
    bot._thread.join(10)
    assert repr(bot.error) == "RuntimeError('the real failure')" and bot.strategy.quotes and all(
        bot.strategy.client.orders[cid]["status"] == "cancelled" for cid in bot.strategy.quotes), bot.error

def test_a_market_makers_hummingbot_parameters(market):
    """Bid and ask spreads of their own, order levels each further out and bigger, a ceiling above which it buys nothing, and
    a delay after a fill before it quotes again (the quotes left stand meanwhile)."""
    add_symbol(market, symbol="HUMM")
    params = dict(bid_spread=2, ask_spread=5, order_levels=3, level_spread=4, level_qty=2, qty=10, refresh_s=30.0, fair=10_000)
    maker = BotThread(MarketMaker("HUMM", filled_order_delay=3.0, **params), market.url, market.keys["tess"])
    live = lambda: open_quotes(tess, "HUMM", remaining=True)
    try:
        assert maker.wait_started(), maker.error
        with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["tess"]) as tess:
            assert live() == [("buy", 9990, 14), ("buy", 9994, 12), ("buy", 9998, 10), ("sell", 10005, 10), ("sell", 10009, 12), ("sell", 10013, 14)]
            assert tom.order("HUMM", "sell", 10, 9998, tif="IOC")["status"] == "filled"
            time.sleep(0.5)  # within the delay: nothing placed, the rest stand
            assert live() == [("buy", 9990, 14), ("buy", 9994, 12), ("sell", 10005, 10), ("sell", 10009, 12), ("sell", 10013, 14)]
            anew, end = [("buy", 9990, 13), ("buy", 9994, 11), ("buy", 9998, 9), ("sell", 10005, 11), ("sell", 10009, 13), ("sell", 10013, 15)], time.monotonic() + 15
            while live() != anew and time.monotonic() < end: time.sleep(0.1)  # past it: quoted anew, long 10 of 100: the bids smaller, the asks bigger
            assert live() == anew
    finally: maker.stop()
    ceiling = BotThread(MarketMaker("HUMM", price_ceiling=9_000, **params), market.url, market.keys["tess"])
    try:
        assert ceiling.wait_started(), ceiling.error
        assert {side for side, _ in ceiling.strategy.quotes.values()} == {"sell"}  # fair 10,000 is above the ceiling: no bids
    finally: ceiling.stop()

@pytest.mark.parametrize("params, said", [
    (dict(bid_spread=0), "bid_spread 0: expected a whole number of ticks from 1, or none (spread)"),
    (dict(order_levels=6), "order_levels 6: expected a whole number from 1 to 5"),
    (dict(level_qty=-1), "level_qty -1: expected a whole number from 0"),
    (dict(filled_order_delay=-1), "filled_order_delay -1: expected seconds from 0"),
    (dict(price_floor=200, price_ceiling=100), "price_floor 200, price_ceiling 100: expected the floor below the ceiling")])
def test_a_market_makers_bad_parameters_are_named(params, said):
    with pytest.raises(ValidationError, match=re.escape(said)): MarketMaker("DEMO", **params)

def test_a_market_makers_partly_filled_quote_is_never_taken_for_others(market):
    "The fill's book change comes before its order's: the bid's level 7 of its 10 was taken for others' best, and the maker quoted 19 ticks off."
    add_symbol(market, symbol="SEVEN")
    with TradingClient(market.url, market.keys["tom"]) as tom, TradingClient(market.url, market.keys["tess"]) as tess:
        tom.order("SEVEN", "buy", 5, 960), tom.order("SEVEN", "sell", 5, 1040)
        maker = BotThread(MarketMaker("SEVEN", spread=2, qty=10, refresh_s=30.0, filled_order_delay=2.0), market.url, market.keys["tess"])
        try:
            assert maker.wait_started(), maker.error
            assert tom.order("SEVEN", "sell", 3, 990, tif="IOC")["filled"] == 3
            time.sleep(0.5)  # within the delay: the quotes left stand, where they were
            live = open_quotes(tess, "SEVEN", remaining=True)
            assert live == [("buy", 998, 7), ("sell", 1002, 10)] and maker.strategy.quoted_mid == 1000, (live, maker.strategy.quoted_mid)
        finally: maker.stop()
        tom.cancel_all()

def test_a_bot_stopped_while_its_service_stalls_waits_for_its_cancels_answers_up_to_stop_s(tmp_path, monkeypatch, caplog):
    import aiplatform.trading.bots as bots
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    stalled = lambda seconds: (os.kill(svc.proc.pid, signal.SIGSTOP), threading.Timer(seconds, os.kill, (svc.proc.pid, signal.SIGCONT)).start())
    try:
        for stall, stop_s in ((2.5, bots.STOP_S), (6, 1)):  # the service answers within STOP_S, then not
            monkeypatch.setattr(bots, "STOP_S", stop_s)
            bot = BotThread(MarketMaker("DEMO", fair=500, qty=2), svc.url, keys["tom"])
            with TradingClient(svc.url, keys["tom"]) as tom:
                assert bot.wait_started(20), bot.error
                deadline = time.monotonic() + 20
                while len(tom.orders_frame(symbol="DEMO")) < 2 and time.monotonic() < deadline: time.sleep(0.05)
                placed, began = set(bot.strategy.client.placed), time.monotonic()
                stalled(stall)
                assert bot.stop(timeout=15) and placed
                took, told = time.monotonic() - began, {bot.strategy.client.orders[c]["status"] for c in placed}
                if stall < stop_s:  # before: its cancels cut off after a second, their answers never read (left to the cancel on disconnect)
                    assert stall <= took < stall + 3 and told == {"cancelled"}, (took, told)
                    assert "not cancelled" not in caplog.text
                else:  # no longer than STOP_S for the cancels; cancelled on disconnect once the service goes on
                    assert took < stall and told == {"open"} and "its orders not cancelled (no answer in 1 s); cancelled on disconnect" in caplog.text, (took, told)
                    while time.monotonic() < deadline and len(tom.orders_frame(symbol="DEMO")): time.sleep(0.1)
                    assert tom.orders_frame(symbol="DEMO").empty
    finally:
        os.kill(svc.proc.pid, signal.SIGCONT)
        stop(svc)

@pytest.mark.parametrize("hook_busy", [False, True])
def test_a_bot_whose_on_stop_hangs_is_cut_off_and_its_orders_cancelled_still(market, caplog, monkeypatch, hook_busy):
    "`hook_busy`: a timer hook still busy when the bot is stopped, cancelled first; the `on_stop` after it hangs too (then cut off at STOP_S)."
    import aiplatform.trading.bots as bots
    monkeypatch.setattr(bots, "STOP_S", 1)
    class Stuck(MarketMaker):
        busy = None
        async def on_timer(self):
            await super().on_timer()
            if self.busy is not None: self.busy.set(), await asyncio.sleep(60)
        async def on_stop(self): await asyncio.sleep(60)  # waiting on something that never comes
    add_symbol(market, symbol=(symbol := f"STUCK{int(hook_busy)}"))
    bot = BotThread(Stuck(symbol, fair=500, qty=2), market.url, market.keys["tess"])
    with TradingClient(market.url, market.keys["tess"]) as tess:
        assert bot.wait_started(20), bot.error
        deadline = time.monotonic() + 20
        while len(tess.orders_frame(symbol=symbol)) < 2 and time.monotonic() < deadline: time.sleep(0.05)
        if hook_busy:
            bot.strategy.busy = threading.Event()
            assert bot.strategy.busy.wait(10)
        began = time.monotonic()
        assert bot.stop(timeout=5) and time.monotonic() - began < 4.5  # before: never (hook_busy: once its hook was cancelled, nothing cut on_stop)
        assert tess.orders_frame(symbol=symbol).empty and "on_stop cut off" in caplog.text

def test_a_market_maker_whose_outer_level_is_always_refused_quotes_on_with_the_others(tight):
    "Before: its standing inner quotes were never placed again, so the outer level's refusals came in a row, and 20 of them stopped a maker that was quoting."
    add_symbol(tight, symbol="LEVELS")
    maker = BotThread(MarketMaker("LEVELS", qty=10, order_levels=2, level_qty=5, fair=90, refresh_s=0.02), tight.url, tight.keys["tess"])  # level 1: 15 lots at 87 or 93, past max_notional 1,000
    try:
        assert maker.wait_started(), maker.error
        time.sleep(1.5)  # some 70 refreshes, each refusing level 1's two quotes
        assert maker.running and maker.strategy.refused_in_a_row < 20, maker.error
        with TradingClient(tight.url, tight.keys["tess"]) as tess:
            assert sorted(tess.orders_frame(symbol="LEVELS")["qty"]) == [10, 10]  # level 0's two quotes stand
    finally: maker.stop()

def test_bots_sharing_an_account_make_no_wash_trades(market):
    "Before: the Desk's bots, on its one account, traded with each other (276 of 282 trades with the account on both sides, a reviewer's), and moved the price."
    add_symbol(market, symbol="SHARED")
    bots = [BotThread(MarketMaker("SHARED", spread=2, qty=5, refresh_s=0.2, fair=1_000), market.url, market.keys["tess"]),
            BotThread(NoiseTrader("SHARED", rate=200, spread=6, max_qty=5, fair=1_000, seed=2), market.url, market.keys["tess"])]
    try:
        for bot in bots: assert bot.wait_started(), bot.error
        time.sleep(2)
    finally:
        for bot in bots: bot.stop()
    with TradingClient(market.url, market.keys["tess"]) as tess:
        fills, done = tess.fills_frame(symbol="SHARED"), tess.orders_frame("done", symbol="SHARED", limit=10_000)
    assert fills.empty, fills.head()  # no other account trades SHARED: each fill would be a wash trade
    assert (done.reason == "self_trade").sum() > 0  # the crossing orders were cancelled instead

def test_a_bots_sizes_are_limited_as_an_orders_qty_is():
    "Before: 1,099,511,627,776 (the book's 2**40), where the service and the Desk's ticket say 1,000,000,000,000 (a Desk reviewer's)."
    with pytest.raises(ValidationError, match="qty 1000000000001: expected a whole number from 1 to 1,000,000,000,000$"): MarketMaker("DEMO", qty=10**12 + 1)
    with pytest.raises(ValidationError, match=r"fair 0: expected a whole price from 1 to 1,099,511,627,776, or none"): MarketMaker("DEMO", fair=0)

def test_a_bots_seconds_bound_its_connect_to_a_service_that_does_not_answer():
    "Before: its seconds began once it had connected and subscribed; a service that took connections and answered nothing held it for the client's GET_S."
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, answers nothing
    url, began = f"http://127.0.0.1:{silent.getsockname()[1]}/", time.monotonic()
    with pytest.raises(TimeoutError, match=r"^bot market_maker on DEMO: not connected and subscribed within its 0\.5 s$"):
        asyncio.run(run(MarketMaker("DEMO"), url, "a-key", seconds=0.5))
    assert time.monotonic() - began < 3
    silent.close()

class Stubborn(Strategy):
    "Each timer, an order past the service's max_order_qty of 50, not caught: the runner counts it."
    async def on_timer(self): await self.client.order(self.symbol, "buy", 60, 100)

class Mixed(Strategy):
    "Each timer, an order placed (an IOC buy at 1: nothing to take, cancelled) and three refused, caught and counted by the strategy itself."
    async def on_timer(self):
        await self.client.order(self.symbol, "buy", 1, 1, tif="IOC")
        for _ in range(3):
            try: await self.client.order(self.symbol, "buy", 60, 100)
            except OrderRejected as e: self.refused(e)

class Mover(Strategy):
    "Places a sell, has it filled, then modifies it: an order done meanwhile (a Conflict), not a reason to stop."
    async def on_start(self): await self.client.order(self.symbol, "sell", 1, 100, cid="mover-1")
    async def on_fill(self, fill): await self.client.modify("mover-1", price=101)

def test_a_strategy_of_ones_own_meets_the_services_refusals_as_the_built_ins_do(market, caplog):
    "Before: the first refusal raised in a hook stopped it (and under BotThread, silently); the runner now counts each for any strategy, and an order told placed ends a row."
    add_symbol(market, symbol="SELF")
    stubborn, mixed, mover = (BotThread(cls("SELF"), market.url, market.keys[user]) for cls, user in ((Stubborn, "tess"), (Mixed, "tom"), (Mover, "ada")))
    try:
        for bot in (stubborn, mixed, mover): assert bot.wait_started(), bot.error
        with TradingClient(market.url, market.keys["tom"]) as tom:
            deadline = time.time() + 10
            while not mover.strategy.fills and time.time() < deadline:
                with contextlib.suppress(Exception): tom.order("SELF", "buy", 1, 100, tif="IOC")
                time.sleep(0.2)
        deadline = time.time() + 10
        while stubborn.running and time.time() < deadline: time.sleep(0.05)
        assert str(stubborn.error).startswith("strategy on SELF: 20 orders in a row refused, none placed; the last: order "), stubborn.error  # 20 of them, not 1
        assert "bot strategy on SELF stopped: strategy on SELF: 20 orders in a row refused" in caplog.text  # said by BotThread
        assert mixed.running and mover.running, (mixed.error, mover.error)  # 60 refusals and 20 placed, in two seconds; a modify of a filled order
        assert mover.strategy.fills and mixed.strategy.refused_in_a_row < 20
    finally:
        for bot in (stubborn, mixed, mover): bot.stop()

def test_a_strategy_whose_hook_is_not_async_or_whose_largest_order_is_no_pair_is_refused_at_its_start(market):
    class Plain(Strategy):
        def on_timer(self): pass
    class Odd(Strategy):
        def largest_order(self): return 60
    for cls, said in ((Plain, "strategy: on_timer is a plain function: expected async def on_timer(self, …) (each hook is awaited)"),  # before: a TypeError once running
                      (Odd, "strategy: largest_order() gave 60: expected (qty, the parameters it comes from) or None")):  # before: "'int' object is not subscriptable"
        bot = BotThread(cls("SIM"), market.url, market.keys["tess"])
        assert not bot.wait_started() and str(bot.error) == said, bot.error

def test_a_strategy_of_ones_own_runs_as_its_own_process(market, tmp_path, monkeypatch, capsys):
    "Before: the command line took the built-ins alone."
    (tmp_path/"mybot.py").write_text('''from aiplatform.trading.bots import Strategy
class Quoter(Strategy):
    name = "quoter"
    def __init__(self, symbol, price=90, qty=1): super().__init__(symbol, price=price, qty=qty)
    async def on_start(self): await self.client.order(self.symbol, "buy", self.params["qty"], self.params["price"])
''')
    add_symbol(market, symbol="MINE")  # one the account has not traded
    key = _key_file(tmp_path/"key", market.keys["tom"])
    bots = lambda name, *more: subprocess.run([sys.executable, "-m", "aiplatform.trading.bots", name, "--symbol", "MINE", "--url", market.url, "--key-file", key, *more],
                                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    done = bots("mybot:Quoter", "--set", "price=95", "--seconds", "3")  # its connect counts: room for a loaded machine's
    assert (done.returncode, done.stdout) == (0, "quoter on MINE: position 0, P&L 0.00\n"), done.stderr
    from aiplatform.trading.bots import main
    monkeypatch.syspath_prepend(tmp_path)  # as `python -m` in that folder has it: the mistakes in process, a second each the quicker
    for name, more, said in (("mybot:Nope", (), "bot 'mybot:Nope': module 'mybot' has no attribute 'Nope'"),
                             ("mybot:Quoter", ("--set", "width=3"), "bot 'mybot:Quoter': got an unexpected keyword argument 'width'"),
                             ("nobot:Quoter", (), "bot 'nobot:Quoter': No module named 'nobot'"), ("marketmaker", (), "bot 'marketmaker': expected one of"),
                             (":Quoter", (), "bot ':Quoter': expected a built-in's name or module:Class")):  # before: a traceback
        with pytest.raises(SystemExit) as e: main([name, "--symbol", "MINE", "--url", market.url, "--key-file", str(key), *more])
        err = capsys.readouterr().err
        assert e.value.code == 2 and said in err.splitlines()[-1], err

class OwnMistake(Strategy):
    async def on_timer(self): raise ValidationError("window 0: expected at least 1")  # its own code's

class BadQuery(Strategy):
    async def on_timer(self): await self.client.get("fills", 0, limit=0)  # the service answers 400, to a query: no order refused

def test_a_strategys_own_error_or_a_bad_query_in_a_hook_stops_it_at_once(market):
    "Only the service's refusals of order commands are counted; the first form of the runner counted these as refusals, or let a bot run on."
    for cls, said in ((OwnMistake, "window 0: expected at least 1"), (BadQuery, "limit '0': expected an integer from 1 to 10000")):
        bot = BotThread(cls("SIM"), market.url, market.keys["tess"])
        deadline = time.monotonic() + 10
        while bot.running and time.monotonic() < deadline: time.sleep(0.05)
        assert not bot.running and said in str(bot.error) and bot.strategy.refused_in_a_row == 0, bot.error

def test_a_market_makers_quote_skewed_past_the_accounts_largest_order_is_cut_to_it(market):
    "Short 40 with qty 40: its bid skews to 56, past max_order_qty 50 (before: refused at each refresh, for ever, and the short never bought back)."
    add_symbol(market, symbol="SKEW")
    with TradingClient(market.url, market.keys["tess"]) as tess, TradingClient(market.url, market.keys["tom"]) as tom:
        tess.order("SKEW", "sell", 40, 1_000), tom.order("SKEW", "buy", 40, 1_000, tif="IOC")
        maker = BotThread(MarketMaker("SKEW", qty=40, max_inventory=100, fair=1_000, refresh_s=0.2), market.url, market.keys["tess"])
        try:
            assert maker.wait_started(), maker.error
            deadline = time.monotonic() + 10
            while len(tess.orders_frame(symbol="SKEW")) < 2 and time.monotonic() < deadline: time.sleep(0.05)
            time.sleep(0.5)  # a few refreshes
            quotes = tess.orders_frame(symbol="SKEW").set_index("side")["qty"].to_dict()
            assert quotes == {"buy": 50, "sell": 24} and maker.strategy.refused_in_a_row == 0, (quotes, maker.strategy.refused_in_a_row)
        finally: maker.stop()
