"""The trading service in its own process: every HTTP route and WebSocket message, with bad input on each field;
accounts kept apart; a WebSocket opened only with a key valid now, and closed once it is not; idempotent client order ids; subscriptions; slow consumers;
rate limits; cancel on disconnect."""
import asyncio, contextlib, json, os, re, signal, socket, subprocess, time, urllib.error, urllib.request
from urllib.parse import urljoin, urlsplit
from types import SimpleNamespace
from pathlib import Path
import aiohttp, jsonschema, pytest
from trading_service import RawSocket, make_users, start_trading, stop
from aiplatform.trading.feed import LocalBook
from aiplatform.core import Conflict, Unauthorized
from aiplatform.trading.client import AsyncTradingClient, OrderRejected, RateLimited, error_of, order_message
from aiplatform.trading.orders import CID, SYMBOL
from aiplatform.platform.metrics import operations
from prometheus_client.parser import text_string_to_metric_families

@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    data = tmp_path_factory.mktemp("trading")
    keys = make_users(data)
    service = start_trading(data, symbols="DEMO ACME LOTS", heartbeat=0.5, rate=200, burst=300, queue_limit=50, send_buffer_kb=8)
    service.keys, service.data = keys, data
    yield service
    stop(service)

def call(svc, method, path, user="tess", body=None, raw=None):
    "Status and JSON body of one request to the service as `user`."
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Authorization": f"Bearer {svc.keys[user]}"} if user else {}
    request = urllib.request.Request(svc.url + path, data=data, headers=headers | {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())

def test_openapi_describes_every_route(svc):
    status, doc = call(svc, "GET", "openapi.json", user=None)
    assert status == 200 and doc["openapi"].startswith("3.")
    server = lambda at: urljoin(at + "openapi.json", doc["servers"][0]["url"]).rstrip("/")  # a path of the document follows it
    assert server("http://gw/aiplatform/trading/") + "/symbols" == "http://gw/aiplatform/trading/symbols"  # behind the gateway's proxy (before: from the root)
    with urllib.request.urlopen(server(svc.url) + "/health", timeout=30) as r: assert r.status == 200
    assert {(p, m) for p, ops in doc["paths"].items() for m in ops} >= {("/orders", "post"), ("/orders/{cid}", "delete"),
        ("/orders/{cid}", "patch"), ("/orders/cancel-all", "post"), ("/fills", "get"), ("/positions", "get"),
        ("/depth/{symbol}", "get"), ("/trades/{symbol}", "get"), ("/symbols", "get"), ("/admin/symbols", "post"),
        ("/admin/symbols/{symbol}/halt", "post"), ("/admin/symbols/{symbol}/resume", "post"), ("/me", "get"),
        ("/ws", "get"), ("/health", "get"), ("/metrics", "get"), ("/openapi.json", "get"), ("/admin/accounts/{account}/limits", "put")}  # before: /ws to /openapi.json left out
    modify = doc["components"]["schemas"]["Modify"]  # PATCH's body, as the handler takes it: the cid is the path's
    assert "cid" not in modify["properties"] and "required" not in modify
    valid = jsonschema.Draft202012Validator(modify).is_valid  # what the document takes, the route takes: a price, a qty or both, not null
    assert [valid(b) for b in ({"price": 101}, {"qty": 2}, {"price": 101, "qty": 2}, {}, {"price": None}, {"qty": None, "price": None})] == [True] * 3 + [False] * 3
    assert {p["name"]: p["schema"]["pattern"] for ops in doc["paths"].values() for op in ops.values() for p in op.get("parameters", []) if p["in"] == "path"} \
        == {"cid": CID, "symbol": SYMBOL, "account": "^[A-Za-z0-9._-]{1,64}$"}
    assert {"201", "409", "421"} <= set(doc["paths"]["/admin/symbols"]["post"]["responses"]) and "200" not in doc["paths"]["/admin/symbols"]["post"]["responses"]
    assert {"404", "409", "422", "429"} <= set(doc["paths"]["/orders/{cid}"]["delete"]["responses"])
    assert all("421" in doc["paths"][path]["get"]["responses"] for path in ("/orders", "/fills"))  # ?symbol= of another shard's
    order = jsonschema.Draft202012Validator(doc["components"]["schemas"]["Order"]).is_valid  # the rules between fields, as the route checks them
    base = dict(cid="c", symbol="DEMO", side="buy", qty=1)
    assert [order(base | b) for b in ({"price": 1}, {"kind": "market"}, {"kind": "stop", "stop_price": 5}, {"kind": "stop_limit", "stop_price": 5, "price": 5},
                                      {"price": 1, "post_only": True, "display_qty": 1})] == [True] * 5
    assert [order(base | b) for b in ({}, {"kind": "market", "price": 1}, {"kind": "stop"}, {"price": 1, "stop_price": 5},
                                      {"price": 1, "post_only": True, "tif": "IOC"}, {"kind": "market", "display_qty": 1})] == [False] * 6
    limits = {p["name"]: p["schema"].get("default") for p in doc["paths"]["/orders"]["get"]["parameters"]}
    assert (limits["limit"], limits["status"], doc["paths"]["/trades/{symbol}"]["get"]["parameters"][-1]["schema"]["default"]) == (1_000, None, 100)  # status: open, or all with since_ns

def test_every_websocket_message_is_what_the_openapi_document_says(svc):
    "A client in another language has the messages' schemas: each kind the service sends, met in a session, is its ServerMessage; each sent, a ClientMessage."
    doc = call(svc, "GET", "openapi.json", user=None)[1]
    server, client = (jsonschema.Draft202012Validator(doc["components"]["schemas"][name] | {"components": doc["components"]}) for name in ("ServerMessage", "ClientMessage"))
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "WSDOC", "price_band_pct": 0})[0] == 201
    frames = [[{"op": "subscribe", "channel": c, "symbol": s, "req": c} for c, s in (("book", "WSDOC"), ("trades", "WSDOC"))] + [{"op": "subscribe", "channel": c} for c in ("orders", "positions")],
              [order_message("WSDOC", "sell", 5, 100, cid="ws-1") | {"req": 1}, order_message("WSDOC", "sell", 1, 101, cid="ws-2") | {"req": "two"},
               order_message("WSDOC", "buy", 1, 101, cid="ws-3", post_only=True) | {"req": 3}],
              [{"op": "modify", "cid": "ws-2", "qty": 2, "req": 4}, {"op": "ping", "req": 5}, {"op": "nope", "req": 6}],
              [{"op": "cancel", "cid": "ws-2", "req": 7}], [{"op": "cancel", "cid": "ws-2", "req": 8}, {"op": "cancel_all", "symbol": "WSDOC", "req": 9}],
              [{"op": "unsubscribe", "channel": "trades", "symbol": "WSDOC", "req": 10}]]
    async def scenario():
        session, ws = await _ws(svc, "ada")
        seen = []
        for k, frame in enumerate(frames):
            await ws.send_json(frame)
            seen += await _until(ws, lambda m: m.get("req") == frame[-1].get("req", "positions") or m.get("type") == "positions")
            if k == 1:  # another account takes 2: a trade, a fill, a position
                assert call(svc, "POST", "orders", user="tom", body=dict(cid="ws-t", symbol="WSDOC", side="buy", price=100, qty=2))[0] == 200
                seen += await _until(ws, lambda m: m.get("type") == "position")
        assert call(svc, "POST", "admin/symbols/WSDOC/halt", user="ada")[0] == 200 and call(svc, "POST", "admin/symbols/WSDOC/resume", user="ada")[0] == 200
        seen += await _until(ws, lambda m: m.get("type") == "heartbeat")  # a status each, then quiet
        await session.close()
        return seen
    seen = asyncio.run(scenario())
    for m in seen: server.validate(m)
    for m in (m for frame in frames for m in frame if m["op"] != "nope"): client.validate(m)
    assert {m["type"] for m in seen} == {"ack", "reject", "error", "subscribed", "unsubscribed", "pong", "book_snapshot", "book", "trades", "trade",
                                         "orders", "order", "fill", "positions", "position", "status", "heartbeat"}
    assert not any(map(client.is_valid, ({"op": "nope"}, {"op": "order", "cid": "x"}, {"op": "ping", "x": 1},
                                         {"op": "order", "cid": "x", "symbol": "WSDOC", "side": "buy", "qty": 1}))) and not server.is_valid({"type": "ack", "req": 1})  # a limit order needs its price
    refused = ({"op": "modify", "cid": "ws-2"}, {"op": "subscribe", "channel": "book"}, {"op": "unsubscribe", "channel": "orders", "symbol": "WSDOC"},
               {"op": "subscribe", "channel": "trades", "symbol": "wsdoc"})  # before: valid, and every one a 400 (a reviewer's, from a client generated from the document)
    assert not any(map(client.is_valid, refused)) and client.is_valid({"op": "ping", "req": None})  # a null req: none, as the service takes it
    assert client.is_valid({"op": "subscribe", "channel": "orders", "symbol": None})  # as `subscribed` tells it back

def test_me_names_the_callers_account_whichever_of_its_keys(svc):
    from aiplatform.platform.auth import create_key
    from aiplatform.core import load_settings
    second = create_key("tess", settings=load_settings(env={}, platform={"data_dir": svc.data}))
    status, tess = call(svc, "GET", "me")
    assert status == 200 and (tess["username"], tess["role"]) == ("tess", "trader") and isinstance(tess["account"], int)
    assert tess["limits"] == {"max_order_qty": 1_000_000, "max_notional": 10**12, "max_open_orders": 10_000, "max_position": 10**12, "max_iceberg_parts": 100,  # as the service's settings say
                              "rate": 200.0, "burst": 300, "read_rows": 20_000, "connections": 100, "queue_limit": 50}  # before: none told (a bot learned its qty was past the limit from 20 refusals)
    assert call(svc, "GET", "me", user="vic")[1]["role"] == "viewer" and call(svc, "GET", "me", user="vic")[1]["account"] != tess["account"]
    svc.keys["tess2"] = second
    try: assert call(svc, "GET", "me", user="tess2") == (200, tess)
    finally: del svc.keys["tess2"]
    assert call(svc, "GET", "me?account=tom")[0] == 400 and call(svc, "GET", "me", user=None)[0] == 401

def test_every_answer_is_what_the_openapi_document_says(svc):
    doc = call(svc, "GET", "openapi.json", user=None)[1]
    def answered(method, path, route=None, user="ada", body=None, expect=200):  # the admin trades here: the other tests count tess's orders
        status, answer = call(svc, method, path, user, body)
        assert status == expect, (path, answer)
        schema = doc["paths"][route or "/" + path.split("?")[0]][method.lower()]["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator(schema | {"components": doc["components"]}).validate(answer)
        return answer
    answered("GET", "me"), answered("GET", "symbols")
    assert answered("GET", "", "/", user=None)["openapi"] == "openapi.json"  # what the gateway's launcher opens (before: a 404)
    answered("POST", "admin/symbols", user="ada", body={"symbol": "DOCS", "price_band_pct": 0}, expect=201)
    answered("POST", "orders", body=dict(cid="doc-1", symbol="DOCS", side="sell", price=100, qty=5))
    answered("POST", "orders", user="tom", body=dict(cid="doc-t", symbol="DOCS", side="buy", price=100, qty=2))
    answered("PATCH", "orders/doc-1", "/orders/{cid}", body={"qty": 2}), answered("GET", "orders/doc-1", "/orders/{cid}")
    answered("GET", "depth/DOCS", "/depth/{symbol}"), answered("GET", "trades/DOCS", "/trades/{symbol}")
    answered("GET", "orders?status=all"), answered("GET", "fills"), answered("GET", "positions")
    answered("POST", "orders", body=dict(cid="doc-p", symbol="DOCS", side="buy", price=100, qty=1, post_only=True), expect=422)  # refused by the book
    answered("DELETE", "orders/doc-1", "/orders/{cid}"), answered("POST", "orders/cancel-all")
    answered("POST", "admin/symbols/DOCS/halt", "/admin/symbols/{symbol}/halt", user="ada")
    answered("POST", "orders", body=dict(cid="doc-h", symbol="DOCS", side="buy", price=90, qty=1), expect=409)
    answered("POST", "admin/symbols/DOCS/resume", "/admin/symbols/{symbol}/resume", user="ada")
    answered("GET", "admin/accounts/tom/limits", "/admin/accounts/{account}/limits"), answered("PUT", "admin/accounts/tom/limits", "/admin/accounts/{account}/limits", body={})
    answered("PUT", "admin/accounts/nobody/limits", "/admin/accounts/{account}/limits", body={}, expect=404)
    answered("GET", "orders/nope", "/orders/{cid}", expect=404), answered("GET", "depth/DOCS?levels=0", "/depth/{symbol}", expect=400)
    answered("GET", "health", user=None), answered("GET", "openapi.json", user=None), answered("GET", "metrics", user=None, expect=401)
    assert answered("GET", "ws", expect=400)["error"].startswith("GET /ws: expected a WebSocket handshake")  # before: "Bad Request: GET /ws"
    answered("GET", "ws?cancel_on_disconnect=yes", "/ws", expect=400), answered("GET", "ws", user=None, expect=401)

def test_orders_over_http_from_submit_to_fill(svc):
    order = dict(cid="h-1", symbol="DEMO", side="sell", price=100, qty=5)
    status, state = call(svc, "POST", "orders", body=order)
    assert status == 200 and (state["status"], state["remaining"]) == ("open", 5)
    assert call(svc, "POST", "orders", body=order)[1]["order_id"] == state["order_id"]  # the same cid: the same order
    status, modified = call(svc, "PATCH", "orders/h-1", body={"qty": 4})
    assert (status, modified["remaining"]) == (200, 4)
    status, taker = call(svc, "POST", "orders", user="tom", body=dict(cid="t-1", symbol="DEMO", side="buy", price=100, qty=3))
    assert (status, taker["status"], taker["avg_price"]) == (200, "filled", 100.0)
    assert call(svc, "GET", "depth/DEMO?levels=5")[1]["asks"] == [[100, 1]]
    assert [(t["price"], t["qty"], t["side"]) for t in call(svc, "GET", "trades/DEMO")[1]["trades"]][-1:] == [(100, 3, "buy")]
    assert [(f["cid"], f["qty"], f["liquidity"]) for f in call(svc, "GET", "fills?symbol=DEMO")[1]["fills"]] == [("h-1", 3, "maker")]
    pos = {p["symbol"]: p for p in call(svc, "GET", "positions")[1]["positions"]}
    assert (pos["DEMO"]["qty"], pos["DEMO"]["avg_price"]) == (-3, 100.0)
    status, cancelled = call(svc, "DELETE", "orders/h-1")
    assert (status, cancelled["status"], cancelled["reason"]) == (200, "cancelled", "user_cancel")
    status, again = call(svc, "DELETE", "orders/h-1")  # with the order, as the WebSocket answers (before: none)
    assert (status, again["error"], again["status"], again["order"]) == (409, "order 'h-1': already cancelled (user_cancel)", 409, cancelled)
    assert [o["cid"] for o in call(svc, "GET", "orders?status=done")[1]["orders"]] == ["h-1"]

def test_orders_and_fills_since_a_stamp_are_those_changed_or_made_at_or_after_it(svc):
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "SINCE"})[0] == 201  # a book of its own
    call(svc, "POST", "orders", body=dict(cid="since-1", symbol="SINCE", side="sell", price=100, qty=2))
    stamp = call(svc, "POST", "orders", body=dict(cid="since-2", symbol="SINCE", side="sell", price=101, qty=2))[1]["updated_ns"]
    call(svc, "POST", "orders", user="tom", body=dict(cid="since-t", symbol="SINCE", side="buy", price=100, qty=1))  # since-1 filled in part
    assert [o["cid"] for o in call(svc, "GET", f"orders?status=all&since_ns={stamp + 1}")[1]["orders"]] == ["since-1"]
    assert [f["cid"] for f in call(svc, "GET", f"fills?since_ns={stamp + 1}")[1]["fills"]] == ["since-1"]
    assert [o["cid"] for o in call(svc, "GET", f"orders?symbol=SINCE&since_ns={stamp}")[1]["orders"]] == ["since-2", "since-1"]  # at or after, as they changed
    assert call(svc, "GET", "fills?since_ns=-1")[1]["error"] == "since_ns '-1': expected an integer from 0 to 9223372036854775807"

def test_orders_since_a_stamp_are_every_one_changed_by_default_those_that_ended_too(svc):
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "GONE"})[0] == 201
    stamp = call(svc, "POST", "orders", body=dict(cid="gone-1", symbol="GONE", side="sell", price=100, qty=1))[1]["updated_ns"]
    call(svc, "POST", "orders", user="tom", body=dict(cid="gone-t", symbol="GONE", side="buy", price=100, qty=1))  # gone-1 filled while its client was away
    assert [(o["cid"], o["status"]) for o in call(svc, "GET", f"orders?since_ns={stamp + 1}")[1]["orders"]] == [("gone-1", "filled")]  # before: the open ones only, none
    assert call(svc, "GET", "orders?symbol=GONE")[1]["orders"] == [] and call(svc, "GET", f"orders?since_ns={stamp + 1}&status=open")[1]["orders"] == []

def test_a_halt_and_a_resume_are_told_to_the_symbols_book_and_trades_subscribers(svc):
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "PAUSE"})[0] == 201
    async def main():
        async with AsyncTradingClient(svc.url, svc.keys["vic"]) as vic:
            heard = []
            vic.listeners.append(lambda m: m["type"] == "status" and heard.append(m))
            await vic.subscribe("book", "PAUSE"), await vic.subscribe("trades", "PAUSE")
            assert vic.halted == {"PAUSE": False}  # as subscribed
            for halted, route in ((True, "halt"), (True, "halt"), (False, "resume")):
                assert (await asyncio.to_thread(call, svc, "POST", f"admin/symbols/PAUSE/{route}", user="ada"))[1]["halted"] is halted
                async with asyncio.timeout(5):
                    while vic.halted["PAUSE"] is not halted: await asyncio.sleep(0.01)
                if halted:
                    async with AsyncTradingClient(svc.url, svc.keys["tom"]) as late:
                        await late.subscribe("trades", "PAUSE")
                        assert late.halted == {"PAUSE": True}  # said as it subscribes
            await vic.request("ping")  # whatever the service had to say has come
            assert heard == [{"type": "status", "symbol": "PAUSE", "halted": True}, {"type": "status", "symbol": "PAUSE", "halted": False}]  # a change, once (before: nothing)
            await vic.unsubscribe("book", "PAUSE")
            assert vic.halted == {"PAUSE": False}  # its trades still followed
            await vic.unsubscribe("trades", "PAUSE")
            assert vic.halted == {}  # no longer told of: not kept as it last was
    asyncio.run(main())

def test_orders_and_fills_since_a_stamp_come_page_by_page_oldest_first_missing_none(svc, monkeypatch):
    "Before, a page held the newest `limit` at or after the stamp: paging from the last one's skipped the rest, and a batch's fills share one stamp."
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "PAGE"})[0] == 201
    for i in range(25): call(svc, "POST", "orders", body=dict(cid=f"page-{i}", symbol="PAGE", side="sell", price=100 + i, qty=1))
    since, pages, more = 0, [], True
    while more:
        answer = call(svc, "GET", f"orders?symbol=PAGE&status=all&since_ns={since}&limit=10")[1]
        pages.append([o["cid"] for o in answer["orders"]])
        since, more = answer["orders"][-1]["updated_ns"] + 1, answer["more"]
    assert pages == [[f"page-{i}" for i in range(k, min(k + 10, 25))] for k in (0, 10, 20)]
    import aiplatform.trading.client as client
    monkeypatch.setattr(client, "CATCH_UP_LIMIT", 10)
    async def caught_up():
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as tess: return await tess._since("orders", 0, 0, "updated_ns", status="all", symbol="PAGE")
    assert [o["cid"] for o in asyncio.run(caught_up())] == [f"page-{i}" for i in range(25)]  # a catch-up's pages, 10 each
    call(svc, "POST", "orders", user="tom", body=dict(cid="page-sweep", symbol="PAGE", side="buy", price=200, qty=25))  # 25 fills, one stamp
    answer = call(svc, "GET", f"fills?symbol=PAGE&since_ns={since}&limit=10")[1]
    assert (len(answer["fills"]), len({f["ns"] for f in answer["fills"]}), answer["more"]) == (25, 1, False)  # the whole stamp, not 10 of it
    assert (len(call(svc, "GET", "fills?symbol=PAGE&limit=10")[1]["fills"]), call(svc, "GET", "fills?symbol=PAGE&limit=10")[1]["more"]) == (10, True)  # the newest

def test_engine_refusals_are_422_with_the_order(svc):
    call(svc, "POST", "orders", body=dict(cid="r-1", symbol="ACME", side="sell", price=200, qty=1))
    status, body = call(svc, "POST", "orders", body=dict(cid="r-2", symbol="ACME", side="buy", price=200, qty=1, post_only=True))
    assert (status, body["error"], body["order"]["status"]) == (422, "order 'r-2': post_only_would_take: a post-only order would have traded at once: it was refused, not placed", "rejected")
    status, body = call(svc, "POST", "orders", body=dict(cid="r-3", symbol="ACME", side="buy", price=150, qty=2_000_000))
    assert (status, body["order"]["reason"]) == (422, "risk_max_order_qty")
    status, body = call(svc, "POST", "orders", body=dict(cid="r-4", symbol="ACME", side="sell", price=250, qty=10_001, display_qty=100))
    assert (status, body["order"]["reason"]) == (422, "risk_iceberg_parts")  # 101 refills: one order must not stall the market
    call(svc, "POST", "orders/cancel-all", body={})

def test_an_orders_state_shows_its_stop_price_and_shown_size(svc):
    call(svc, "POST", "orders", body=dict(cid="st-1", symbol="ACME", side="buy", kind="stop", stop_price=260, qty=2))
    call(svc, "POST", "orders", body=dict(cid="ice-1", symbol="ACME", side="sell", price=270, qty=100, display_qty=10))
    states = {o["cid"]: o for o in call(svc, "GET", "orders?symbol=ACME")[1]["orders"]}
    assert (states["st-1"]["stop_price"], states["st-1"]["display_qty"], states["ice-1"]["display_qty"]) == (260, None, 10)
    assert (states["st-1"]["price"], states["ice-1"]["price"]) == (None, 270)  # not the limit it waits as (before: its band's edge)
    assert call(svc, "POST", "orders/cancel-all", body={"symbol": "ACME"})[0] == 200

@pytest.mark.parametrize("body, error", [
    (dict(cid="b", symbol="DEMO", side="buy", price=100, qty=0), "qty 0: expected a whole quantity, from 1 to 10**12"),
    (dict(cid="b", symbol="DEMO", side="hold", price=100, qty=1), "side 'hold': expected \"buy\" or \"sell\""),
    (dict(cid="b", symbol="DEMO", side="buy", price=-1, qty=1), "price -1: expected a whole price, from 1 to 2**40"),
    (dict(cid="b" * 37, symbol="DEMO", side="buy", price=100, qty=1), "cid"),
    (dict(cid="b", symbol="demo", side="buy", price=100, qty=1), "symbol 'demo'"),
    (dict(cid="b", symbol="DEMO", side="buy", qty=1), "price: required for a limit order"),
    (dict(cid="b", symbol="DEMO", side="buy", price=100, qty=1, colour="red"), "colour: unknown field"),
    (dict(cid="b", symbol="NOPE", side="buy", price=100, qty=1), "symbol 'NOPE': not traded"),
    (dict(cid="b", symbol="DEMO", side="buy", price=300, qty=1), "outside DEMO's band of 10%"),
])
def test_a_bad_order_is_a_4xx_naming_its_field_and_changes_nothing(svc, body, error):
    before = call(svc, "GET", "orders?status=all")[1]
    status, answer = call(svc, "POST", "orders", body=body)
    assert 400 <= status < 500 and error in answer["error"], answer
    assert call(svc, "GET", "orders?status=all")[1] == before

def test_bad_queries_bodies_and_callers(svc):
    assert call(svc, "GET", "depth/DEMO?levels=0")[1]["error"] == "levels '0': expected an integer from 1 to 1000"
    assert call(svc, "GET", "orders?colour=red")[1]["error"].startswith("query parameter 'colour': unknown")
    assert call(svc, "GET", "orders?status=gone")[1]["error"] == "status 'gone': expected one of open, done, all"
    assert call(svc, "POST", "orders", raw=b"[1, 2]")[1]["error"] == "request body: expected a JSON object"
    assert call(svc, "POST", "orders", raw=b"{")[0] == 400
    deep = b'{"cid": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # 200 KB, deeper than Python's json recurses
    assert call(svc, "POST", "orders", raw=deep)[1]["error"].startswith("request body: not JSON (maximum recursion depth")
    assert call(svc, "PATCH", "orders/nope", body={"qty": 1})[0] == 404
    assert call(svc, "PATCH", "orders/x", body={"cid": "y", "qty": 1})[1]["error"] == "cid: given in the path; leave it out of the body"
    assert call(svc, "GET", "orders", user=None)[0] == 401
    assert call(svc, "GET", "orders", user="vic")[1]["error"] == "user 'vic' (role viewer): needs one of trader, admin"
    assert call(svc, "GET", "depth/DEMO", user="vic")[0] == 200
    assert call(svc, "GET", "depth/DEMO?levels=0", user=None)[0] == 401  # who asks is checked before what is asked
    async def a_bad_key():
        async with AsyncTradingClient(svc.url, "aip_0000_nonsense") as c: await c.subscribe("book", "DEMO")
    with pytest.raises(Unauthorized, match=r"ws: API key: unknown"): asyncio.run(a_bad_key())  # the service's words, not the handshake's
    assert call(svc, "GET", "orders?status=gone", user="vic")[0] == 403
    assert call(svc, "POST", "admin/symbols/DEMO/halt?x=1", user="tess")[0] == 403
    assert call(svc, "GET", "depth/DEMO?levels=%D9%A1%D9%A2")[1]["error"] == "levels '\u0661\u0662': expected an integer from 1 to 1000"

def test_a_repeated_query_parameter_and_a_malformed_path_are_refused_and_change_nothing(svc):
    for symbol in ("RQA", "RQB"):
        call(svc, "POST", "admin/symbols", user="ada", body={"symbol": symbol})
        call(svc, "POST", "orders", body=dict(cid=f"rq-{symbol}", symbol=symbol, side="buy", price=50, qty=1))
    status, body = call(svc, "POST", "orders/cancel-all?symbol=RQA&symbol=RQB")
    assert (status, body["error"]) == (400, "query parameter 'symbol': given 2 times, expected once")  # before: 200, and ACME's alone cancelled
    assert call(svc, "GET", "orders?account=tess&account=tom", user="ada")[0] == 400
    assert [call(svc, "GET", f"orders/rq-{symbol}")[1]["status"] for symbol in ("RQA", "RQB")] == ["open", "open"]
    assert call(svc, "GET", "depth/zz") == (400, {"error": "symbol 'zz': expected a symbol: 1 to 16 capitals, digits, '.', '_' or '-'", "status": 400})  # before: 421, "shard 1"
    assert call(svc, "GET", "orders/" + "x" * 40)[0] == 400  # before: 404
    assert call(svc, "GET", "orders?symbol=NOPE")[0] == 404 and call(svc, "GET", "fills?symbol=NOPE")[0] == 404  # before: an empty list
    for symbol in ("RQA", "RQB"): call(svc, "POST", f"orders/cancel-all?symbol={symbol}")

def test_a_stop_already_reached_is_refused_naming_the_last_trade_and_a_waiting_stop_is_moved(svc):
    call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "STOPS", "price_band_pct": 0})
    call(svc, "POST", "orders", user="tom", body=dict(cid="st-s", symbol="STOPS", side="sell", price=100, qty=1))
    call(svc, "POST", "orders", body=dict(cid="st-b", symbol="STOPS", side="buy", price=100, qty=1))  # the last trade: 100
    stop = dict(cid="sar-1", symbol="STOPS", side="buy", kind="stop_limit", stop_price=95, price=96, qty=1)
    assert call(svc, "POST", "orders", body=stop) == (400, {"error": "stop_price 95: a buy stop must be above STOPS's last trade 100, or it would trade at once", "status": 400})
    status, state = call(svc, "POST", "orders", body=stop | {"stop_price": 105, "price": 106})  # the same cid, corrected: not taken by the refusal
    assert (status, state["status"]) == (200, "open")
    status, state = call(svc, "PATCH", "orders/sar-1", body={"stop_price": 103, "price": 104, "qty": 2})  # before: 409, "cannot be modified"
    assert (status, [state[k] for k in ("stop_price", "price", "qty", "status")]) == (200, [103, 104, 2, "open"])
    assert call(svc, "PATCH", "orders/sar-1", body={"stop_price": 99}) == (400, {"error": "stop_price 99: a buy stop must be above STOPS's last trade 100, or it would trade at once", "status": 400})
    assert call(svc, "PATCH", "orders/sar-1", body={"stop_price": 0})[1]["error"] == "stop_price 0: expected a whole stop price, from 1 to 2**40"
    call(svc, "POST", "orders", body=dict(cid="st-lim", symbol="STOPS", side="buy", price=90, qty=1))
    assert call(svc, "PATCH", "orders/st-lim", body={"stop_price": 95}) == (400, {"error": "stop_price 95: order 'st-lim' is a limit order, it has no stop price", "status": 400})

    async def two_in_one_frame():
        session, ws = await _ws(svc, "tess")
        await ws.send_json([{"op": "modify", "cid": "sar-1", "stop_price": 101, "req": 1}, {"op": "modify", "cid": "sar-1", "stop_price": 110, "req": 2}])
        got = {m.get("req"): m for m in await _until(ws, lambda m: m.get("req") == 1)}
        await session.close()
        return got
    got = asyncio.run(two_in_one_frame())  # the second would be checked against a stop the first replaces
    assert (got[1]["type"], got[1]["order"]["stop_price"], got[2]["type"], got[2]["status"]) == ("ack", 101, "reject", 409)
    assert got[2]["error"] == "order 'sar-1': a stop waiting for its trigger takes one modify a batch, and one is queued: send this one once it is answered"
    async def over_the_websocket():
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as client: return await client.modify("sar-1", stop_price=102)
    assert asyncio.run(over_the_websocket())["stop_price"] == 102
    call(svc, "POST", "orders", user="tom", body=dict(cid="st-s3", symbol="STOPS", side="sell", price=102, qty=3))
    call(svc, "POST", "orders", body=dict(cid="st-b3", symbol="STOPS", side="buy", price=102, qty=1))  # a trade at 102 triggers it
    state = call(svc, "GET", "orders/sar-1")[1]
    assert [state[k] for k in ("status", "filled", "avg_price")] == ["filled", 2, 102]  # the 2 left at 102, its limit 104
    call(svc, "POST", "orders/cancel-all?symbol=STOPS")

def test_accounts_are_kept_apart_and_an_admin_sees_every_one(svc):
    call(svc, "POST", "orders", body=dict(cid="mine", symbol="ACME", side="buy", price=90, qty=1))
    assert call(svc, "GET", "orders/mine", user="tom")[0] == 404
    assert call(svc, "DELETE", "orders/mine", user="tom")[0] == 404
    assert "mine" not in [o["cid"] for o in call(svc, "GET", "orders?status=all", user="tom")[1]["orders"]]
    assert call(svc, "GET", "orders?account=tess", user="tom")[1]["error"].startswith("account: only an admin")
    assert call(svc, "GET", "orders?account=tom", user="tom") == call(svc, "GET", "orders", user="tom")  # their own, named (before: a 403)
    assert call(svc, "GET", "orders/mine?account=tess", user="ada")[1]["status"] == "open"
    assert call(svc, "DELETE", "orders/mine?account=tess", user="ada")[1]["status"] == "cancelled"

def test_an_admin_places_and_modifies_orders_only_for_an_active_trader(svc):
    "Before: an admin's order on a viewer's account filled, and the viewer held a position their role cannot see; so did a disabled user."
    from aiplatform.core import load_settings
    from aiplatform.platform.auth import add_user, set_active
    settings = load_settings(env={}, platform={"data_dir": svc.data})
    add_user("gone", "trader", settings=settings)
    call(svc, "POST", "orders?account=gone", user="ada", body=dict(cid="left", symbol="ACME", side="buy", price=80, qty=1))
    set_active("gone", False, settings=settings)
    for account, why in (("vic", "a viewer"), ("gone", "disabled")):
        status, answer = call(svc, "POST", f"orders?account={account}", user="ada", body=dict(cid="for-them", symbol="ACME", side="buy", price=80, qty=1))
        assert (status, answer["error"]) == (403, f"account {account!r}: {why}; orders and modifies are for an active trader's account")
    assert call(svc, "PATCH", "orders/left?account=gone", user="ada", body={"qty": 5})[0] == 403
    assert call(svc, "GET", "orders?status=all&account=vic", user="ada")[1]["orders"] == []  # nothing placed
    assert call(svc, "DELETE", "orders/left?account=gone", user="ada")[1]["status"] == "cancelled"  # a disabled trader's orders can still be cleared

def test_admin_adds_halts_and_resumes_symbols(svc):
    assert call(svc, "POST", "admin/symbols", user="tess", body={"symbol": "NEW"})[0] == 403
    spec = dict(symbol="NEW", tick_size=5, lot_size=10, price_band_pct=5.0)
    assert call(svc, "POST", "admin/symbols", user="ada", body=spec)[0] == 201
    assert call(svc, "POST", "admin/symbols", user="ada", body=spec)[0] == 409
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "X", "tick_size": 0})[1]["error"] == "tick_size 0: expected a tick size from 1 to 2**40"
    order = dict(cid="n-1", symbol="NEW", side="buy", price=102, qty=10)
    assert call(svc, "POST", "orders", body=order)[1]["error"] == "price 102: expected a multiple of NEW's tick size 5"
    assert call(svc, "POST", "orders", body=order | {"price": 100, "qty": 15})[1]["error"] == "qty 15: expected a multiple of NEW's lot size 10"
    assert call(svc, "POST", "orders", body=order | {"price": 100})[0] == 200
    assert call(svc, "POST", "admin/symbols/NEW/halt", user="ada")[1]["halted"] is True
    assert call(svc, "POST", "orders", body=order | {"cid": "n-2", "price": 100})[0] == 409
    assert call(svc, "DELETE", "orders/n-1")[1]["status"] == "cancelled"  # cancels pass a halt
    assert call(svc, "POST", "admin/symbols/NEW/resume", user="ada")[1]["halted"] is False
    assert "NEW" in [s["symbol"] for s in call(svc, "GET", "symbols")[1]["symbols"]]
    log = open(svc.log).read()  # who changed the market: in its log
    assert "admin ada added symbol NEW: {'symbol': 'NEW', 'tick_size': 5" in log and "admin ada halted symbol NEW\n" in log and "admin ada resumed symbol NEW\n" in log

def _metrics(text) -> dict:
    "The samples of a Prometheus text exposition: {(name, ((label, value), ...)): value}."
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}

def test_the_metrics_count_commands_trades_refusals_and_closes_and_time_each_batch_for_the_status_page(tmp_path):
    shared = tmp_path/"metrics"  # the platform's shared folder, as the gateway gives its services
    shared.mkdir()
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", rate=100, burst=100, queue_limit=50, send_buffer_kb=8, env={"PROMETHEUS_MULTIPROC_DIR": shared})
    svc.keys = keys
    def metrics():
        with urllib.request.urlopen(urllib.request.Request(svc.url + "metrics", headers={"Authorization": f"Bearer {keys['vic']}"}), timeout=30) as r:
            return _metrics(r.read().decode())
    def until(want: dict) -> dict:
        deadline, got = time.monotonic() + 20, {}
        while time.monotonic() < deadline:
            got = metrics()
            if all(got.get(key) == value for key, value in want.items()): return got
            time.sleep(0.2)
        raise AssertionError({key: got.get(key) for key in want})
    try:
        async def scenario():
            session, ws = await _ws(svc, "tess")
            await ws.send_json([{"op": "subscribe", "channel": "book", "symbol": "DEMO", "req": 0},
                                order_message("DEMO", "sell", 5, 100, cid="m-1") | {"req": 1}, order_message("DEMO", "buy", 2, 100, cid="m-2") | {"req": 2},
                                order_message("DEMO", "buy", 1, 100, cid="m-3", post_only=True) | {"req": 3}, {"op": "cancel", "cid": "m-1", "req": 4},
                                {"op": "nope", "req": 5}])
            await _until(ws, lambda m: m.get("req") == 5)
            await ws.send_str("{oops")
            await ws.send_json([{"op": "ping", "req": i} for i in range(150)])  # past the burst of 100
            await _until(ws, lambda m: m.get("req") == 149)
            def labels(**kw): return tuple(sorted(kw.items()))
            until({("aiplatform_trading_commands_total", labels(symbol="DEMO", command="order", outcome="ok")): 2,
                   ("aiplatform_trading_commands_total", labels(symbol="DEMO", command="order", outcome="post_only_would_take")): 1,
                   ("aiplatform_trading_commands_total", labels(symbol="DEMO", command="cancel", outcome="ok")): 1,
                   ("aiplatform_trading_trades_total", labels(symbol="DEMO")): 1, ("aiplatform_trading_traded_qty_total", labels(symbol="DEMO")): 2,
                   ("aiplatform_trading_messages_refused_total", labels(status="400")): 2,  # the unknown op, the frame not JSON
                   ("aiplatform_trading_connections", labels(shard="0")): 1, ("aiplatform_trading_subscriptions", labels(shard="0", channel="book")): 1,
                   ("aiplatform_trading_halted", labels(symbol="DEMO")): 0})
            assert 1 <= metrics()[("aiplatform_trading_messages_refused_total", labels(status="429"))] <= 57  # the pings past the 93 tokens left of the burst, less those its refill let by
            assert call(svc, "POST", "admin/symbols/DEMO/halt", user="ada")[1]["halted"] is True
            slow = RawSocket(svc.url, keys["vic"])  # a reader that falls behind
            for i in range(20):
                slow.send([{"op": "ping", "req": 100 * i + j} for j in range(100)])
                time.sleep(0.02)
            await session.close()
            until({("aiplatform_trading_halted", labels(symbol="DEMO")): 1, ("aiplatform_trading_connections_closed_total", labels(why="slow_consumer")): 1,
                   ("aiplatform_trading_connections", labels(shard="0")): 0})
            slow.sock.close()
        asyncio.run(scenario())
        (batch,) = [o for o in operations(shared) if (o["tool"], o["operation"]) == ("trading", "batch")]  # what the status page shows
        assert batch["count"] >= 1 and batch["failures"] == 0 and batch["budget"] == 0.01 and 0 < batch["p50"] < 1, batch
    finally: stop(svc)

def test_websockets_opened_again_and_again_cost_one_scrypt_and_a_revoked_key_opens_none(tmp_path, monkeypatch):
    """Each handshake reads the key's state again (before: a key revoked within 10 s of a check opened a connection that traded for good),
    not its secret: a reconnect storm costs no scrypt a connection."""
    from aiplatform.core import load_settings
    from aiplatform.platform import auth
    keys, scrypts, check = make_users(tmp_path), [], auth.check_secret
    monkeypatch.setattr(auth, "check_secret", lambda *a: (scrypts.append(1), check(*a))[1])
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO"})
    async def scenario():
        _, runner, url = await _serving(settings)
        async def status():
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['tess']}"}) as session:
                try: await (await session.ws_connect(url + "ws")).close()
                except aiohttp.WSServerHandshakeError as e: return e.status
                return 101
        opened = [await status() for _ in range(5)]
        auth.revoke_key(keys["tess"].split("_")[1], settings=settings)
        opened.append(await status())
        await runner.cleanup()
        return opened
    assert asyncio.run(scenario()) == [101] * 5 + [401] and len(scrypts) == 1

async def _ws(svc, user, **query):
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {svc.keys[user]}"})
    ws = await session.ws_connect(svc.url + "ws", params={k: str(v).lower() for k, v in query.items()})
    return session, ws

async def _until(ws, pred, timeout=10):
    "Messages received until one satisfies `pred` (included)."
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            data = json.loads((await ws.receive()).data)
            for m in data if isinstance(data, list) else [data]:
                seen.append(m)
                if pred(m): return seen

def _answers(svc, frame: str, last, user="tess") -> dict:
    "The answers to the messages of `frame` (JSON text) by their req, up to the one to req `last`; the connection is still open after them."
    async def scenario():
        session, ws = await _ws(svc, user)
        await ws.send_str(frame)
        got = {m.get("req"): m for m in await _until(ws, lambda m: m.get("req") == last)}
        assert not ws.closed
        await session.close()
        return got
    return asyncio.run(scenario())

def test_websocket_orders_acks_rejects_and_idempotent_ids(svc):
    async def scenario():
        session, ws = await _ws(svc, "tess")
        await ws.send_json([order_message("ACME", "sell", 2, 110, cid="w-1") | {"req": 1},
                            order_message("ACME", "sell", 2, 110, cid="w-1") | {"req": 2},
                            {"op": "order", "cid": "w-2", "symbol": "ACME", "side": "buy", "qty": 1, "req": 3},
                            {"op": "nope", "req": 4}, ["not", "an", "object"], {"op": "ping", "req": {"a": 1}},
                            {"op": "cancel", "cid": "w-404", "req": 5}, {"op": "modify", "cid": "w-1", "req": 6}])
        seen = await _until(ws, lambda m: m.get("req") == 2)
        got = {m.get("req"): m for m in seen}
        assert (got[1]["type"], got[2]["type"], got[1]["order"]["order_id"]) == ("ack", "ack", got[2]["order"]["order_id"])
        assert got[3]["error"] == "price: required for a limit order"
        assert got[4]["error"].startswith("op 'nope': expected one of order, cancel")
        assert got[5]["error"] == "order 'w-404': no such client order id in this account"
        assert got[6]["error"] == "modify: expected a new price, qty or stop_price"
        errors = [m["error"] for m in seen if m.get("req") is None]
        assert "message: expected a JSON object with an op, got list" in errors
        assert "req: expected an integer or text of at most 64 characters, echoed in the answer" in errors
        await ws.send_json({"op": "order", "cid": "w-3", "symbol": "ACME", "side": "buy", "qty": 1, "kind": "market", "tif": "FOK",
                            "req": 7})
        (answer,) = [m for m in await _until(ws, lambda m: m.get("req") == 7) if m.get("req") == 7]
        assert (answer["type"], answer["order"]["status"], answer["order"]["filled"]) == ("ack", "filled", 1)
        await ws.send_str("{oops")
        assert (await _until(ws, lambda m: m["type"] == "error"))[-1]["error"].startswith("frame: not JSON")
        await session.close()
    asyncio.run(scenario())

def test_a_viewer_gets_market_data_only(svc):
    async def scenario():
        session, ws = await _ws(svc, "vic")
        await ws.send_json([{"op": "subscribe", "channel": "orders", "req": 1}, order_message("DEMO", "buy", 1, 100) | {"req": 2},
                            {"op": "subscribe", "channel": "book", "symbol": "DEMO", "req": 3}])
        got = {m.get("req"): m for m in await _until(ws, lambda m: m["type"] == "book_snapshot")}
        assert got[1]["error"] == got[2]["error"] == "user 'vic' (role viewer): market data only"
        assert got[3]["type"] == "subscribed"
        await session.close()
    asyncio.run(scenario())

def test_book_trades_orders_positions_and_heartbeats_stream(svc):
    async def scenario():
        async with AsyncTradingClient(svc.url, svc.keys["tess"]) as tess, AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            for channel, symbol in [("book", "LOTS"), ("trades", "LOTS"), ("orders", None), ("positions", None)]:
                await tess.subscribe(channel, symbol)
            beats = []
            tess.listeners.append(lambda m: m["type"] == "heartbeat" and beats.append(m))
            for i in range(20): await tom.order("LOTS", "sell", 2, 100 + i % 5)
            await tess.order("LOTS", "buy", 7, 102, cid="sweep")
            before = len(beats)  # one may have come in a pause before the orders (a slow host)
            async with asyncio.timeout(10):
                while len(beats) == before: await asyncio.sleep(0.05)  # a heartbeat comes after 0.5 s of quiet: the sweep's news are in
            depth = await tess.depth("LOTS")
            assert tess.books["LOTS"].depth() == {"bids": [tuple(x) for x in depth["bids"]], "asks": [tuple(x) for x in depth["asks"]]}
            assert (tess.orders["sweep"]["status"], sum(f["qty"] for f in tess.fills if f["cid"] == "sweep")) == ("filled", 7)
            assert tess.positions["LOTS"]["qty"] == 7 and [t["price"] for t in tess.trades["LOTS"]] == [100, 100, 100, 100]
            assert beats and tess.resyncs == 0
            await tom.cancel_all()
    asyncio.run(scenario())

def test_a_heartbeat_comes_only_after_quiet(svc):
    "Heartbeats every 0.5 s of nothing sent ([trading] heartbeat); a connection answered every 0.1 s gets none (was one every 0.5 s, whatever went out)."
    async def scenario():
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {svc.keys['vic']}"}) as session, session.ws_connect(svc.url + "ws") as ws:
            beats, pongs = [], []
            async def read():
                async for msg in ws:
                    (beats if json.loads(msg.data)["type"] == "heartbeat" else pongs).append(time.monotonic())
            reader = asyncio.create_task(read())
            for _ in range(15):
                await ws.send_json({"op": "ping"})
                await asyncio.sleep(0.1)
            busy = len(beats)
            await asyncio.sleep(1.2)
            reader.cancel()
            return busy, beats, pongs
    busy, beats, pongs = asyncio.run(scenario())
    assert (busy, len(pongs)) == (0, 15) and beats, (busy, beats, pongs)
    assert 0.45 < beats[0] - pongs[-1] < 0.8, beats[0] - pongs[-1]  # 0.5 s after the last frame (was up to twice that)

def test_the_rate_limit_refuses_with_the_limit(svc):
    async def scenario():
        session, ws = await _ws(svc, "tom")
        seen = []
        for k in range(8):  # frames of 40: their answers fit the outbox (50 here)
            await ws.send_json([{"op": "ping", "req": i} for i in range(k * 40, k * 40 + 40)])
            seen += await _until(ws, lambda m: m.get("req") == k * 40 + 39)

        refused = [m for m in seen if m["type"] == "error"]
        assert 10 <= len(refused) < 320 and refused[0]["error"] == "rate limit: 200 messages a second, bursts of 300 ([trading] rate, burst)"
        for k in range(8):  # in each frame, pongs then refusals: once one is refused, so is the rest of its frame
            kinds = [m["type"] for m in sorted((m for m in seen if k * 40 <= m["req"] < k * 40 + 40), key=lambda m: m["req"])]
            assert kinds == sorted(kinds, key=lambda kind: kind == "error"), (k, kinds)
        assert all(0 <= m["retry_after_s"] <= 40 / 200 for m in refused) and max(m["retry_after_s"] for m in refused) > 0  # when the rest could pass
        await session.close()
    asyncio.run(scenario())

def test_the_client_says_when_a_refused_request_may_be_sent_again(svc):
    async def scenario():
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as c:
            answers = await asyncio.gather(*(c.request("ping") for _ in range(400)), return_exceptions=True)
        refused = [a for a in answers if isinstance(a, RateLimited)]
        assert refused and all(0 < e.retry_after_s <= 1 for e in refused), answers[-1]  # before: the service said it, the client dropped it
    asyncio.run(scenario())

def test_a_client_that_keeps_up_gets_a_whole_batch_past_the_queue_limit(svc):
    async def scenario():  # 60 acks and 60 order messages from one batch, past the limit of 50: not a slow consumer
        session, ws = await _ws(svc, "tom")
        await ws.send_json([{"op": "subscribe", "channel": "orders"}] + [order_message("ACME", "buy", 1, 95, req=i) for i in range(60)])
        seen = await _until(ws, lambda m: m.get("req") == 59)
        assert sorted(m["req"] for m in seen if m["type"] in ("ack", "reject")) == list(range(60))  # every answer, whatever it says
        await session.close()
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as tom: await tom.cancel_all()
    asyncio.run(scenario())

def test_a_bad_frame_is_answered_at_once_and_the_client_splits_a_big_batch(svc):
    async def scenario():
        await asyncio.sleep(300 / 200)  # tom's rate limit full again (burst 300, 200 a second; one for all his connections), whatever the tests before sent
        session, ws = await _ws(svc, "tom")
        twice = '[{"op": "ping"}, {"op": "order", "cid": "twice", "symbol": "ACME", "side": "buy", "price": 95, "qty": 1, "qty": 1000}]'
        for send, data, error in ((ws.send_str, "{", "frame: not JSON"), (ws.send_bytes, b"{}", "frame: expected text (JSON), got binary"),
                                  (ws.send_str, twice, "frame: key 'qty' given twice in one object"),  # before: the order traded 1,000
                                  (ws.send_str, "[" + "[" * 1_000 + "]" * 1_000 + ", " + twice[1:], "frame: nested past 254 levels"),  # too deep to look
                                  (ws.send_str, "[" + '{"op": "ping"}, ' * 1_000 + twice[1:], "frame: 1002 messages, at most 1000"),  # counted first: no second pass (before: the key named)
                                  (ws.send_str, twice[:-1] + ', {"op": "ping", "pad": [' + ", ".join(['{"a": 0}'] * 10_000) + "]}]",  # 100 KB: before, a second pass over all of it, 70 ms a MB
                                   "frame: a key given twice in one object (which one is named in a frame up to 64 KB)")):
            await send(data)
            while (first := json.loads((await ws.receive(timeout=5)).data)) == {"type": "heartbeat"}: pass
            assert first["type"] == "error" and first["error"].startswith(error), first  # alone: not held until a heartbeat
        await session.close()
        assert call(svc, "GET", "orders/twice", user="tom")[0] == 404  # the frame refused whole
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:  # past the service's 1,000 messages a frame
            answers = await tom.requests([{"op": "ping"} for _ in range(1_001)], check=False, timeout=5)
        assert len(answers) == 1_001 and {a["type"] for a in answers} <= {"pong", "error"}
    asyncio.run(scenario())

def test_a_thousand_orders_go_in_one_frame_under_a_small_request_kb_and_a_frame_past_a_megabyte_is_closed_with_1009(tmp_path):
    keys, service = make_users(tmp_path), start_trading(tmp_path, symbols="DEMO", price_band_pct=0, limits={"request_kb": 8})
    try:
        async def scenario():
            async with AsyncTradingClient(service.url, keys["tom"]) as tom:  # one frame of 1,000 orders: some 110 KB
                return await tom.requests([order_message("DEMO", "buy", 1, 100 + i % 10) for i in range(1_000)], check=False, timeout=10)
        answers = asyncio.run(scenario())
        assert [a["type"] for a in answers] == ["ack"] * 1_000  # before: the frame past 8 KB closed the connection with 1009
        big = RawSocket(service.url, keys["tom"])
        big.sock.settimeout(10)
        big.send({"op": "ping", "pad": "x" * 1_024_000})  # past the 1,000 KB that a frame may always have
        with pytest.raises(ConnectionError, match=r"closed by the service: 1009 frame not read: Message size \d+ exceeds limit 1024000 bytes \(\[limits\] request_kb, never under 1,000 KB\)"):
            while True: big.messages()
    finally: stop(service)

def test_a_frame_of_text_that_is_not_utf8_is_closed_with_1007_saying_why(svc):
    bad = RawSocket(svc.url, svc.keys["tom"])
    bad.sock.settimeout(10)
    bad.send(b'{"op": "ping", "req": "\xff"}')
    with pytest.raises(ConnectionError, match="closed by the service: 1007 frame not read: Invalid UTF-8 text message"):  # was the code alone
        while True: bad.messages()

def test_a_consumer_that_falls_behind_is_closed_with_the_reason(svc):
    slow = RawSocket(svc.url, svc.keys["vic"])
    slow.sock.settimeout(10)
    for i in range(20):  # the answers pile up unread
        slow.send([{"op": "ping", "req": 100 * i + j} for j in range(100)])
        time.sleep(0.02)
    with pytest.raises(ConnectionError, match=r"closed by the service: 1008 slow consumer: \d+ messages waiting, at most 50"):
        while True: slow.messages()  # what it was sent, then the close frame with the reason
    assert re.search(r"closing vic's connection: slow consumer: \d+ messages waiting, at most 50", Path(svc.log).read_text())

def test_a_consumer_that_falls_behind_and_goes_on_sending_still_gets_the_reason(svc):
    slow = RawSocket(svc.url, svc.keys["vic"])
    slow.sock.settimeout(10)
    for i in range(20):
        slow.send([{"op": "ping", "req": 100 * i + j} for j in range(100)])
        time.sleep(0.02)
    with pytest.raises(ConnectionError, match=r"closed by the service: 1008 slow consumer: \d+ messages waiting, at most 50"):
        for i in range(100_000):  # it reads at last, sending all the while: the service reads on until the close, never resets
            slow.messages()
            slow.send({"op": "ping", "req": i})

def test_a_slow_book_reader_gets_a_fresh_snapshot_and_stays_in_sync(tmp_path):
    keys = make_users(tmp_path)
    svc = start_trading(tmp_path, symbols="DEMO", queue_limit=50, send_buffer_kb=8)  # the default rate: the deltas come quickly
    async def scenario():
        async with AsyncTradingClient(svc.url, keys["tom"]) as tom:
            for j in range(5_000): await tom.requests([order_message("DEMO", "buy", 1, 91 + j % 9)])  # 5,000 book deltas while `slow` reads nothing
            await tom.cancel_all()
            await asyncio.sleep(0.2)
            return await tom.depth("DEMO", 10)
    try:
        slow = RawSocket(svc.url, keys["vic"])
        slow.send({"op": "subscribe", "channel": "book", "symbol": "DEMO"})
        depth = asyncio.run(scenario())
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        book, snapshots = LocalBook("DEMO"), 0
        while book.seq != depth["seq"]:
            for m in slow.messages():
                if m["type"] in ("book", "book_snapshot"):
                    snapshots += m["type"] == "book_snapshot"
                    book.apply(m)  # raises on a gap or a wrong checksum
                    if book.seq == depth["seq"]: break
    finally: stop(svc)
    assert snapshots >= 2  # the first, and at least one that replaced dropped deltas
    assert book.depth()["bids"] == [tuple(x) for x in depth["bids"]]

def test_cancel_on_disconnect_is_chosen_per_connection(svc):
    async def scenario():
        async with AsyncTradingClient(svc.url, svc.keys["tom"], cancel_on_disconnect=True) as leaving:
            await leaving.order("ACME", "buy", 1, 105, cid="cod-1")
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as staying:
            await staying.order("ACME", "buy", 1, 105, cid="cod-2")
        await asyncio.sleep(0.3)
        status = {cid: call(svc, "GET", f"orders/{cid}", user="tom")[1]["status"] for cid in ("cod-1", "cod-2")}
        assert status == {"cod-1": "cancelled", "cod-2": "open"}
    asyncio.run(scenario())

def test_an_order_and_a_refused_modify_of_it_in_one_frame(svc):
    async def scenario():
        session, ws = await _ws(svc, "tess")
        await ws.send_json([order_message("ACME", "buy", 1, 101, cid="om-1") | {"req": 1}, {"op": "modify", "cid": "om-1", "qty": 2_000_000, "req": 2}])
        got = {m.get("req"): m for m in await _until(ws, lambda m: m.get("req") == 2)}
        await session.close()
        return got
    got = asyncio.run(scenario())
    assert (got[1]["type"], got[2]["type"], got[2]["error"]) == ("ack", "reject", "risk_max_order_qty: expected a qty of at most 1,000,000 ([trading] max_order_qty)")
    assert call(svc, "GET", "orders/om-1")[1]["status"] == "open"  # not taken for rejected: it is still found, and cancelled
    assert call(svc, "DELETE", "orders/om-1")[1]["status"] == "cancelled"

def test_a_cancel_of_an_order_filled_earlier_in_its_frame_is_a_conflict(svc):
    "As when the order was filled before: 409 (the client's `Conflict`), not a rejected order (422)."
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "RACE"})[0] == 201  # its own book: nothing else rests there
    got = _answers(svc, json.dumps([order_message("RACE", "sell", 1, 100, cid="race-1") | {"req": 1}, order_message("RACE", "buy", 1, 100, cid="race-2") | {"req": 2},
                                    {"op": "cancel", "cid": "race-1", "req": 3}]), 3)
    assert [got[r]["order"]["status"] for r in (1, 2)] == ["filled", "filled"]
    assert (got[3]["type"], got[3]["status"], got[3]["error"], got[3]["order"]["status"]) == ("reject", 409, "order 'race-1': already filled", "filled")
    assert isinstance(error_of(got[3]["status"], got[3]["error"], got[3]["order"]), Conflict)
    assert call(svc, "DELETE", "orders/race-1") == (409, {k: got[3][k] for k in ("error", "status", "order")})  # the same, later, over HTTP (before: no order)
    assert call(svc, "PATCH", "orders/race-1", body={"qty": 5}) == (409, {k: got[3][k] for k in ("error", "status", "order")})
    later = _answers(svc, json.dumps({"op": "cancel", "cid": "race-1", "req": 4}), 4)[4]  # and over the WebSocket, with the order as in its batch
    assert {k: later[k] for k in ("type", "status", "error")} == {k: got[3][k] for k in ("type", "status", "error")} and later["order"] == got[3]["order"]

def test_wrong_types_are_answered_and_the_connection_goes_on(svc):
    assert call(svc, "POST", "orders", body=dict(cid="s-1", symbol="DEMO", side="buy", price=100, qty=1, self=1))[1]["error"].startswith("self: unknown field")
    got = _answers(svc, json.dumps([{"op": "ping", "req": 1}, {"op": "cancel_all", "symbol": 5, "req": 2}, {"op": "cancel_all", "symbol": ["DEMO"], "req": 3},
                                    {"op": "modify", "cid": "x", "self": 1, "req": 4}, {"op": "ping", "req": 5}]), 5)
    assert (got[1]["type"], got[5]["type"]) == ("pong", "pong")
    assert got[2]["error"].startswith("symbol 5: expected a symbol") and got[3]["error"].startswith("symbol: expected a symbol")
    assert got[4]["error"].startswith("self: unknown field") and {got[k]["status"] for k in (2, 3, 4)} == {400}

def test_a_frame_json_cannot_carry_both_ways_is_refused_whole_with_where_and_the_connection_goes_on(svc):
    """A number past a double's range, a lone surrogate, nesting past 1,024 levels: refused as the frame they are in (orjson reads
    strictly what it must write back: a reading that let a lone surrogate in as a req failed to write its answer, and dropped the connection)."""
    bad = ['[{"op": "ping", "req": 2}, {"op": "order", "qty": 1%s}]' % ("0" * 400), '{"op": "ping", "req": 1e400}', '{"op": "ping", "req": "\\ud800"}',
           "[" * 2_000 + "]" * 2_000]
    async def scenario():
        session, ws = await _ws(svc, "tess")
        for frame in bad: await ws.send_str(frame)
        await ws.send_str('{"op": "ping", "req": 1}')
        got = await _until(ws, lambda m: m.get("req") == 1)
        await session.close()
        return got
    got = asyncio.run(scenario())
    errors = [m["error"] for m in got if m["type"] == "error"]
    assert len(errors) == 4 and all(e.startswith("frame: not JSON (") and "line 1 column" in e for e in errors), errors
    assert [m["type"] for m in got if m.get("req") is not None] == ["pong"]  # the next frame answered

def test_an_unknown_field_is_named_in_a_few_words_however_long(svc):
    long = "x" * 200_000
    got = _answers(svc, json.dumps([{"op": "subscribe", "channel": "book", "symbol": "DEMO", long: 1, "req": 1},
                                    {"op": "order", "cid": "u-1", "symbol": "DEMO", "side": "buy", "price": 100, "qty": 1, long: 1, "req": 2},
                                    {"op": "cancel", "cid": "u-1", long: 1, "req": 3}, {"op": "ping", long: 1, "req": 4}]), 4)
    for k in (1, 2, 3, 4): assert got[k]["status"] == 400 and "unknown field" in got[k]["error"] and len(got[k]["error"]) < 300, (k, len(got[k]["error"]))  # before: 200 kB each
    status, answer = call(svc, "GET", f"orders?{'y' * 5_000}=1")
    assert status == 400 and answer["error"].startswith("query parameter 'yyy") and len(answer["error"]) < 300

def test_cancel_all_over_http_takes_a_symbol_in_its_body(svc):
    for cid, symbol in (("ca-1", "DEMO"), ("ca-2", "ACME")): call(svc, "POST", "orders", body=dict(cid=cid, symbol=symbol, side="buy", price=101, qty=1))
    assert call(svc, "POST", "orders/cancel-all", body={"symbol": "ACME", "colour": "red"})[1]["error"].startswith("colour: unknown field")
    assert call(svc, "POST", "orders/cancel-all?symbol=ACME", body={"symbol": "ACME"})[1]["error"] == "symbol: given in the query; leave it out of the body"
    status, answer = call(svc, "POST", "orders/cancel-all", body={"symbol": "ACME"})
    assert status == 200 and "ca-2" in answer["cancelling"] and "ca-1" not in answer["cancelling"]
    assert call(svc, "GET", "orders/ca-1")[1]["status"] == "open"
    assert "ca-1" in call(svc, "POST", "orders/cancel-all")[1]["cancelling"]  # no body: every symbol

def test_an_order_sent_just_before_a_disconnect_is_cancelled_with_it(svc):
    async def scenario():  # the close frame arrives before the order's batch is matched
        for i in range(10):
            session, ws = await _ws(svc, "tom", cancel_on_disconnect=True)
            await ws.send_json(order_message("ACME", "buy", 1, 90, cid=f"last-{i}"))
            await ws.close()
            await session.close()
    asyncio.run(scenario())
    time.sleep(0.3)
    assert [o["cid"] for o in call(svc, "GET", "orders?symbol=ACME", user="tom")[1]["orders"] if o["cid"].startswith("last-")] == []

def test_cancel_on_disconnect_cancels_only_what_the_connection_placed(svc):
    call(svc, "POST", "orders", user="tom", body=dict(cid="cod-http", symbol="ACME", side="buy", price=101, qty=5))
    async def scenario():
        async with AsyncTradingClient(svc.url, svc.keys["tom"], cancel_on_disconnect=True) as leaving:
            await leaving.modify("cod-http", qty=4)
            await leaving.order("ACME", "buy", 1, 101, cid="cod-ws")
        await asyncio.sleep(0.3)
    asyncio.run(scenario())
    assert {cid: call(svc, "GET", f"orders/{cid}", user="tom")[1]["status"] for cid in ("cod-http", "cod-ws")} == {"cod-http": "open", "cod-ws": "cancelled"}
    call(svc, "DELETE", "orders/cod-http", user="tom")

def test_mistakes_count_against_the_rate_limit(svc):
    async def scenario():
        session, ws = await _ws(svc, "tom")
        seen = []
        for k in range(8):  # 320 messages at once (past the burst of 300 before 20 more come), all but one a frame not even an object
            await ws.send_json([1] * 39 + [{"op": "ping", "req": k}])
        seen += await _until(ws, lambda m: m.get("req") == 7)
        await session.close()
        return seen
    refused = [m for m in asyncio.run(scenario()) if m["type"] == "error" and m["error"].startswith("rate limit")]
    assert len(refused) >= 10

def test_admin_routes_check_their_query(svc):
    status, answer = call(svc, "POST", "admin/symbols/LOTS/halt?halted=false", user="ada")
    assert (status, answer["error"]) == (400, "query parameter 'halted': unknown (none expected)")
    assert call(svc, "GET", "symbols")[1]["symbols"][2]["halted"] is False

def test_a_halt_takes_no_body_and_a_repeated_one_is_logged_as_changing_nothing(svc):
    status, answer = call(svc, "POST", "admin/symbols/LOTS/halt", user="ada", body={"reason": "fat finger"})
    assert (status, answer["error"]) == (400, "request body field 'reason': unknown (none expected: a halt or a resume takes no fields)")  # before: 200, the reason dropped
    assert call(svc, "POST", "admin/symbols/LOTS/halt", user="ada", raw=b"stop")[0] == 400
    assert call(svc, "GET", "symbols")[1]["symbols"][2]["halted"] is False  # nothing changed
    for _ in range(2): assert call(svc, "POST", "admin/symbols/LOTS/halt", user="ada", body={})[1]["halted"] is True
    assert call(svc, "POST", "admin/symbols/LOTS/resume", user="ada")[1]["halted"] is False
    log = Path(svc.log).read_text()
    assert "admin ada halted symbol LOTS\n" in log and "admin ada halted symbol LOTS (it already was halted: nothing changed)\n" in log

def test_a_symbol_an_admin_adds_takes_the_shards_band_and_must_be_tradable(tmp_path):
    keys, service = make_users(tmp_path), start_trading(tmp_path, symbols="DEMO", price_band_pct=2, max_order_qty=1_000)
    admin = SimpleNamespace(url=service.url, keys=keys)
    try:
        assert call(admin, "POST", "admin/symbols", user="ada", body={"symbol": "NEWB"})[1]["price_band_pct"] == 2.0  # before: 10, whatever the setting
        assert call(admin, "POST", "admin/symbols", user="ada", body={"symbol": "WIDE", "price_band_pct": 5})[1]["price_band_pct"] == 5.0
        status, answer = call(admin, "POST", "admin/symbols", user="ada", body={"symbol": "BIGLOT", "lot_size": 5_000})
        assert (status, answer["error"]) == (400, "lot_size 5,000: expected at most 1,000, the largest order ([trading] max_order_qty): no order in BIGLOT could trade")
        status, answer = call(admin, "POST", "admin/symbols", user="ada", body={"symbol": "FAR", "tick_size": 2**40})
        assert (status, answer["error"]) == (400, "tick_size 1,099,511,627,776 times lot_size 1: expected at most 1,000,000,000,000, the largest notional "
                                                  "([trading] max_notional): no order in FAR could trade")
        assert sorted(s["symbol"] for s in call(admin, "GET", "symbols")[1]["symbols"]) == ["DEMO", "NEWB", "WIDE"]
    finally: stop(service)

def test_the_client_survives_a_failing_listener_and_opens_one_socket(svc, monkeypatch):
    opened, connect = [], aiohttp.ClientSession.ws_connect
    monkeypatch.setattr(aiohttp.ClientSession, "ws_connect", lambda self, *a, **k: (opened.append(1), connect(self, *a, **k))[1])
    async def scenario():
        async with AsyncTradingClient(svc.url, svc.keys["tom"]) as tom:
            tom.listeners.append(lambda m: 1 / 0)
            a, b = await asyncio.gather(tom.order("ACME", "buy", 1, 101), tom.order("ACME", "buy", 1, 101))  # both open the socket at once
            assert len(opened) == 1 and (a["status"], b["status"]) == ("open", "open")
            assert len(await tom.cancel_all("ACME")) >= 2  # answered, though every message broke the listener
    asyncio.run(scenario())

async def _serving(settings) -> tuple:
    "The service's app on a free port in this process: the app, its runner (to clean up) and its URL."
    from aiohttp import web
    import aiplatform.trading.service as service
    app = service.make_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"

def test_a_client_that_reads_nothing_holds_up_no_others_close_nor_the_stop(tmp_path, monkeypatch):
    import threading
    from aiplatform.core import load_settings
    import aiplatform.trading.service as service
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "queue_limit": 100_000, "send_buffer_kb": 8})
    monkeypatch.setattr(service, "CLOSE_S", 1)
    async def main():
        app, runner, url = await _serving(settings)
        filled = threading.Event()
        def stop_reading():  # its socket fills: the service's close frame can never be sent
            slow = RawSocket(url, keys["vic"])
            for i in range(50): slow.send([{"op": "ping", "req": 100 * i + j} for j in range(100)])
            filled.set()
            time.sleep(60)
        threading.Thread(target=stop_reading, daemon=True).start()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['tess']}"}) as session:
            ws = await session.ws_connect(url + "ws?cancel_on_disconnect=true")
            await ws.send_json(order_message("DEMO", "buy", 1, 100, cid="cod"))
            ack = await ws.receive_json(timeout=10)
            assert ack["type"] == "ack"
            await asyncio.get_running_loop().run_in_executor(None, filled.wait, 30)
            await asyncio.sleep(0.5)
            async with asyncio.timeout(10): await runner.cleanup()  # before: waited for the slow client for ever
        return app[service.MARKET].order(ack["order"]["account"], "cod")["status"]
    assert asyncio.run(main()) == "cancelled"  # the other connection was closed, and its order cancelled

def test_a_frame_of_big_answers_to_a_client_that_reads_nothing_costs_bounded_memory(tmp_path, monkeypatch):
    from aiplatform.core import load_settings
    import aiplatform.trading.service as service
    made, first = [], service.Connection._first
    monkeypatch.setattr(service.Connection, "_first", lambda self, channel, symbol: made.append(channel) or first(self, channel, symbol))
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "price_band_pct": 0})
    async def main():
        app, runner, url = await _serving(settings)
        try:
            async with AsyncTradingClient(url, keys["tom"]) as tom, AsyncTradingClient(url, keys["tess"]) as tess:
                await tom.order("DEMO", "sell", 1_000, 100)
                await tess.requests([order_message("DEMO", "buy", 1, 100) for _ in range(1_000)])  # a tape of 1,000 trades
            loop = asyncio.get_running_loop()
            raw = await loop.run_in_executor(None, RawSocket, url, keys["vic"])
            await loop.run_in_executor(None, raw.send, [{"op": "subscribe", "channel": "trades", "symbol": "DEMO", "req": i} for i in range(1_000)])
            await asyncio.sleep(1)
            held = max([c.transport.get_write_buffer_size() for c in app[service.HUB].connections.values()], default=0)
            answers = []
            def read():  # now it reads: every message is answered
                while not any(m.get("req") == 999 for m in answers): answers.extend(raw.messages())
            await loop.run_in_executor(None, read)
            raw.sock.close()
            return held, answers
        finally: await runner.cleanup()
    held, answers = asyncio.run(main())
    assert held < 4 << 20  # before: 100 MB, a thousand tapes at once
    subscribed, refused = [m for m in answers if m["type"] == "subscribed"], [m for m in answers if m["type"] == "error"]
    assert 1 <= len(subscribed) <= 10 and len(subscribed) + len(refused) == 1_000 and {m["status"] for m in refused} == {429}
    assert "its first message counts up to 1,000 and " in refused[0]["error"] and "at most 10,000 may wait ([trading] queue_limit)" in refused[0]["error"]
    assert len(made) == len(subscribed)  # a refused one made no copy of the tape (before: each did, then was refused; an orders channel's held the loop for seconds)
    assert all("retry_after_s" not in m for m in refused)  # not the rate limit's: no time to say

def test_a_subscription_to_orders_counts_the_open_ones_not_the_done_ones_kept(tmp_path):
    "Before: its first message was counted as every order the account kept, done ones too, and a frame's subscribes were refused past the first."
    from aiplatform.core import load_settings
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "price_band_pct": 0, "queue_limit": 1_000})
    async def main():
        app, runner, url = await _serving(settings)
        try:
            async with AsyncTradingClient(url, keys["tom"]) as tom, AsyncTradingClient(url, keys["tess"]) as tess:
                await tom.order("DEMO", "sell", 1_000, 100)
                await tess.requests([order_message("DEMO", "buy", 1, 100) for _ in range(1_000)])  # 1,000 done orders, kept
                await tess.order("DEMO", "buy", 1, 90, cid="open")
            loop = asyncio.get_running_loop()
            raw = await loop.run_in_executor(None, RawSocket, url, keys["tess"])
            await loop.run_in_executor(None, raw.send, [{"op": "subscribe", "channel": "orders", "req": i} for i in range(100)])
            answers = []
            def read():
                while not any(m.get("req") == 99 for m in answers): answers.extend(raw.messages())
                while sum(m["type"] == "orders" for m in answers) < sum(m["type"] == "subscribed" for m in answers): answers.extend(raw.messages())
            await loop.run_in_executor(None, read)
            raw.sock.close()
            return answers
        finally: await runner.cleanup()
    answers = asyncio.run(main())
    assert sum(m["type"] == "subscribed" for m in answers) == 100 and not [m for m in answers if m["type"] == "error"]
    assert {tuple(o["cid"] for o in m["orders"]) for m in answers if m["type"] == "orders"} == {("open",)}

def test_a_user_has_at_most_connections_websockets_open_to_a_shard(tmp_path):
    "Before: a viewer opened connections until the process could open no file, and no one else connected."
    from aiplatform.core import load_settings
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "connections": 2})
    async def main():
        app, runner, url = await _serving(settings)
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['vic']}"}) as vic, \
                       aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['tess']}"}) as tess:
                open_ = [await vic.ws_connect(url + "ws") for _ in range(2)]
                async with vic.get(url + "ws", headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as third:
                    refused = third.status, await third.json()
                async with AsyncTradingClient(url, keys["vic"]) as client:  # the client says why (before: "GET /ws: expected a WebSocket handshake", the words for its plain GET)
                    with pytest.raises(RateLimited, match=re.escape("ws: user 'vic': 2 WebSocket connections open to this shard, at most 2 ([trading] connections)")):
                        await client.requests([{"op": "ping"}])
                other = await tess.ws_connect(url + "ws")  # another user's: theirs to count
                await open_[0].close()
                await asyncio.sleep(0.2)
                again = await vic.ws_connect(url + "ws")  # one closed: room again
                for ws in (open_[1], other, again): await ws.close()
                return refused
        finally: await runner.cleanup()
    status, body = asyncio.run(main())
    assert (status, body["error"]) == (429, "user 'vic': 2 WebSocket connections open to this shard, at most 2 ([trading] connections): close one first")

def test_a_page_says_when_older_orders_and_fills_may_have_been_forgotten(tmp_path, caplog):
    "Before: a client away longer than keep_fills fills paged from its since_ns, got more: false, and never knew some were gone."
    from aiplatform.core import load_settings
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "price_band_pct": 0, "keep_done": 2, "keep_fills": 3})
    async def main():
        app, runner, url = await _serving(settings)
        try:
            async with AsyncTradingClient(url, keys["tess"]) as tess, AsyncTradingClient(url, keys["tom"]) as tom:
                page = lambda what, since: tess.get(what, 0, since_ns=since)
                first = [await page(w, 0) for w in ("orders", "fills")]
                await tom.order("DEMO", "sell", 1, 100)
                await tess.order("DEMO", "buy", 1, 100)  # a fill, an order done: nothing forgotten yet
                second = [await page(w, 0) for w in ("orders", "fills")]
                for _ in range(3):
                    await tom.order("DEMO", "sell", 1, 100)
                    await tess.order("DEMO", "buy", 1, 100)
                kept = [await page(w, 0) for w in ("orders", "fills")]
                with caplog.at_level("WARNING", "trading.client"): await tess._since("fills", 0, 1, "ns")
                return first, second, kept
        finally: await runner.cleanup()
    first, second, kept = asyncio.run(main())
    assert [a["forgotten_ns"] for a in first + second] == [0, 0, 0, 0]
    orders, fills = kept
    assert len(fills["fills"]) == 3 and 0 < fills["forgotten_ns"] <= fills["fills"][0]["ns"] and not fills["more"]  # four made, the oldest gone
    assert len(orders["orders"]) == 2 and 0 < orders["forgotten_ns"] <= min(o["updated_ns"] for o in orders["orders"])
    assert "fills of this account up to" in caplog.text and "may have been forgotten by the service" in caplog.text

def test_a_second_start_where_the_shard_is_served_at_its_port_waits_and_takes_its_place(tmp_path):
    "As the gateway's proxy starts the service a Trading Desk started: before, the second exited at once, and the proxy started it again, for ever (a core's worth)."
    from conftest import BIN, clean_env, free_port, wait_for
    make_users(tmp_path)
    port, other = free_port(), free_port()
    first = start_trading(tmp_path, port=port, env={"AIPLATFORM_TRADING__PORT": str(port)})  # the desk's: at [trading] port
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path, AIPLATFORM_TRADING__PORT=port)
    start = lambda log, at: subprocess.Popen([str(BIN/"aiplatform"), "service", "trading", "--port", str(at)], env=env, stdout=open(tmp_path/log, "w"),
                                             stderr=subprocess.STDOUT, start_new_session=True)
    for at, setting in ((other, port), (other, other)):  # a second start by hand at another port than the one serving: refused, as before
        by_hand = subprocess.run([str(BIN/"aiplatform"), "service", "trading", "--port", str(at)], env=env | {"AIPLATFORM_TRADING__PORT": str(setting)},
                                 capture_output=True, text=True, timeout=60)
        assert by_hand.returncode == 2 and "already served by another process" in by_hand.stderr
    second = start("second.log", port)
    try:
        deadline = time.monotonic() + 60
        while "serves in its place once it stops" not in (tmp_path/"second.log").read_text() and second.poll() is None and time.monotonic() < deadline: time.sleep(0.1)
        assert second.poll() is None and "serves in its place once it stops" in (tmp_path/"second.log").read_text()
        assert call(SimpleNamespace(url=first.url, keys={}), "GET", "health", user=None)[0] == 200
        stop(first)
        wait_for(first.url + "health", second, timeout=60)  # the second took its place
        assert second.poll() is None
    finally:
        if second.poll() is None: os.killpg(second.pid, signal.SIGTERM), second.wait(30)
        stop(first)

def test_a_frame_of_cancel_alls_queues_and_journals_each_orders_cancel_once(svc):
    "Before: each cancel_all queued a cancel of every open order, those with one queued already too, and the journal kept each: memory and disk without bound."
    from aiplatform.trading.journal import RECORD_BYTES
    assert call(svc, "POST", "admin/symbols", user="ada", body={"symbol": "CXL"})[0] == 201
    placed = _answers(svc, json.dumps([order_message("CXL", "buy", 1, 100 - i % 5, cid=f"cx-{i}") | {"req": i} for i in range(50)]), 49, user="ada")  # an account no other test lists
    assert [placed[i]["type"] for i in range(50)] == ["ack"] * 50
    journal = lambda: sum(p.stat().st_size for p in (svc.data/"trading"/"shard-0"/"books"/"CXL").glob("journal-*.log"))
    before = journal()
    got = _answers(svc, json.dumps([{"op": "cancel_all", "symbol": "CXL", "req": 100 + k} for k in range(20)]), 119, user="ada")
    assert all(got[100 + k]["type"] == "ack" and len(got[100 + k]["cancelling"]) == 50 for k in range(20))  # each answered, once every cancel is done
    assert journal() - before == 50 * RECORD_BYTES and call(svc, "GET", "orders?symbol=CXL", user="ada")[1]["orders"] == []

def test_a_client_that_keeps_up_gets_a_whole_sweep_of_twenty_thousand_messages():
    from types import SimpleNamespace
    from aiplatform.trading.service import Connection, Hub, Shared
    class Socket:  # the kernel takes 512 kB at once; the rest waits in the transport, as with asyncio
        written = 0
        def write(self, data): self.written += len(data)
        def get_write_buffer_size(self): return max(0, self.written - 512 * 1024)
        def is_closing(self): return False
    settings = SimpleNamespace(trading=SimpleNamespace(queue_limit=10_000, rate=2_000.0, burst=5_000, heartbeat=15.0, read_rows=20_000))
    conn = Connection(None, Hub(SimpleNamespace(listeners=[], flushed=[], halt_listeners=[])), SimpleNamespace(id=1, username="tess"), settings, False, Socket())
    for i in range(10_000):  # a sweep of 10,000 resting orders, seen by a client subscribed to the tape and to its orders
        conn.push(Shared(type="trade", symbol="DEMO", seq=i, price=100, qty=1, side="buy", ns=i))
        conn.push(Shared(type="fill", fill_id=f"DEMO:{i}:t", order_id=1, cid="sweep", account=1, symbol="DEMO", side="buy", price=100, qty=1,
                         liquidity="taker", ns=i))
    conn.push(Shared(type="order", cid="sweep", status="filled"))
    conn.drain()
    assert (conn.outbox.closed, len(conn.outbox.queue)) == (None, 0) and conn.transport.written > 2_000_000  # nothing waited for it: all sent

def test_a_connection_whose_message_fails_to_encode_is_closed_and_the_others_are_served():
    "A fault of ours in one connection's answers (before: it raised out of the hub's drain, inside the market's flush, and the connections after it were left unsent)."
    from types import SimpleNamespace
    from aiplatform.trading.service import Connection, Hub
    class Socket:
        def __init__(self): self.data = b""
        def write(self, data): self.data += data
        def get_write_buffer_size(self): return 0
        def is_closing(self): return False
    settings = SimpleNamespace(trading=SimpleNamespace(queue_limit=100, rate=2_000.0, burst=5_000, heartbeat=15.0, read_rows=20_000))
    hub = Hub(SimpleNamespace(listeners=[], flushed=[], halt_listeners=[]))
    bad, good = (Connection(None, hub, SimpleNamespace(id=k, username=name), settings, False, Socket()) for k, name in ((1, "bad"), (2, "good")))
    bad.push({"type": "pong", "req": "\ud800"}), good.push({"type": "pong", "req": 7})  # a lone surrogate: orjson cannot write it
    hub.drain()
    assert b'"req":7' in good.transport.data and bad.outbox.closed == "internal error: a message could not be sent" and bad.wake.is_set()

class _Socket:
    "A connection's transport: what was written to it, `backlog` bytes unsent, aborted or not."
    def __init__(self, backlog=0): self.data, self.backlog, self.aborted = b"", backlog, False
    def write(self, data): self.data += data
    def is_closing(self): return self.aborted
    def get_write_buffer_size(self): return self.backlog
    def abort(self): self.aborted = True

class _WS:
    "A WebSocket for a connection's writer task: its close answered, or never (`hangs`: a client that reads nothing)."
    closed, said = False, None
    def __init__(self, hangs=False): self.hangs = hangs
    async def close(self, code, message):
        self.said = (code, message)
        if self.hangs: await asyncio.Event().wait()
        self.closed = True

def _connection(transport):
    from types import SimpleNamespace
    from aiplatform.trading.service import Connection, Hub
    settings = SimpleNamespace(trading=SimpleNamespace(queue_limit=100, rate=2_000.0, burst=5_000, heartbeat=15.0, read_rows=20_000))
    return Connection(None, Hub(SimpleNamespace(listeners=[], flushed=[], halt_listeners=[])), SimpleNamespace(id=1, username="bad"), settings, transport=transport)

def test_a_connection_behind_whose_message_fails_to_encode_is_closed_with_the_reason():
    "The writer task's path (a client behind); before, the task died and the connection stayed open with nothing ever sent."
    conn = _connection(_Socket())
    conn.outbox.put({"type": "pong", "req": "\ud800"}), conn.wake.set()
    asyncio.run(asyncio.wait_for(conn.write(ws := _WS()), 5))
    assert ws.said == (1008, b"internal error: a message could not be sent")

def test_a_client_that_reads_nothing_is_closed_then_dropped_and_trades_no_more():
    """Its socket full, the writer waits outside any send, so it sees the close asked for and drops the socket once `close_s` has gone
    (before: it waited inside the send for ever, the close never went, and the client traded on)."""
    conn = _connection(socket := _Socket(backlog=1 << 20))
    async def scenario():
        conn.outbox.put({"type": "pong", "req": 1}), conn.wake.set()
        writer = asyncio.create_task(conn.write(ws := _WS(hangs=True), close_s=0.2))
        await asyncio.sleep(0.05)  # behind: nothing written, the writer looks again after 10, 20, 40 ms
        conn.outbox.closed = "slow consumer: 101 messages waiting, at most 100"
        await asyncio.wait_for(writer, 2)
        return ws.said
    assert asyncio.run(scenario()) == (1008, b"slow consumer: 101 messages waiting, at most 100") and socket.aborted and socket.data == b""
    conn.handle_frame([{"op": "order", "cid": "late", "symbol": "DEMO", "side": "buy", "price": 1, "qty": 1}])  # no market here: taken, it would fail

def test_a_value_nested_deep_is_answered_and_the_connection_goes_on(svc):
    deep = "[" * 250 + "]" * 250  # within the 254 levels orjson writes back (`keys_fault`): each message answered, the value's repr bounded
    got = _answers(svc, f'[{{"op":"ping","req":1}},{{"op":{deep},"req":2}},{{"op":"subscribe","channel":{deep},"req":3}},{{"op":"ping","req":4}}]', 4)
    assert (got[1]["type"], got[4]["type"]) == ("pong", "pong")
    assert got[2]["error"].startswith("op [[[[[[[...]]]]]]]: expected one of") and got[3]["error"].startswith("channel [[[[[[[...]]]]]]]: expected one of")
    deeper = "[" * 1000 + "]" * 1000  # orjson reads up to 1,024 levels: the frame refused whole (a key given twice could hide beside it)
    async def scenario():
        session, ws = await _ws(svc, "tess")
        await ws.send_str(f'[{{"op":"ping","req":1}},{{"op":{deeper},"req":2}}]')
        await ws.send_str('{"op":"ping","req":3}')
        got = await _until(ws, lambda m: m.get("req") == 3)
        await session.close()
        return [(m["type"], m.get("req"), m.get("error")) for m in got if m["type"] != "heartbeat"]
    assert asyncio.run(scenario()) == [("error", None, "frame: nested past 254 levels"), ("pong", 3, None)]

def test_an_order_and_its_cancel_in_one_frame_tell_its_fill_then_its_newest_state_once(svc):
    assert call(svc, "POST", "orders", user="tom", body=dict(cid="pc-s", symbol="LOTS", side="sell", price=100, qty=1))[0] == 200
    async def scenario():
        session, ws = await _ws(svc, "tess")
        await ws.send_json({"op": "subscribe", "channel": "orders", "req": 1})
        await _until(ws, lambda m: m["type"] == "orders")
        await ws.send_json([order_message("LOTS", "buy", 3, 100, cid="pc-b") | {"req": 2}, {"op": "cancel", "cid": "pc-b", "req": 3}])
        got = await _until(ws, lambda m: m["type"] == "order" and m["status"] == "cancelled")
        await session.close()
        return [(m["type"], m.get("status"), m.get("filled", m.get("qty"))) for m in got if m["type"] in ("order", "fill")]
    assert asyncio.run(scenario()) == [("fill", None, 1), ("order", "cancelled", 1)]  # its newest state once, after its answers (which told it open first)

def test_bad_frames_count_against_the_rate_limit_and_an_empty_list_is_answered(svc):
    async def scenario():
        session, ws = await _ws(svc, "tom")
        for k in range(400):  # past the burst of 300, faster than 100 more come
            if k % 3 == 0: await ws.send_bytes(b"\x00")
            else: await ws.send_str("[]" if k % 3 == 1 else "{not json")
        await ws.send_json({"op": "ping", "req": "end"})
        seen = await _until(ws, lambda m: m.get("req") == "end")
        await session.close()
        return seen
    errors = [m["error"] for m in asyncio.run(scenario()) if m["type"] == "error"]
    assert len([e for e in errors if e.startswith("rate limit")]) >= 50  # before: none, a bad frame took no token
    assert "frame: an empty list, expected 1 to 1000 messages" in errors and any(e.startswith("frame: expected text") for e in errors)

def _trader_and_reader(tmp_path):
    "A market in process, a trader and a book reader on it, each on a socket that can be made `backlog` bytes behind."
    from aiplatform.core import load_settings
    from aiplatform.platform.auth import User
    from aiplatform.trading.service import Connection, Hub, market
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "queue_limit": 10})
    m = market(settings)
    hub = Hub(m)
    trader, reader = (Connection(m, hub, User(i, name, role, True, "", "", {}), settings, transport=_Socket()) for i, name, role in ((2, "tess", "trader"), (1, "vic", "viewer")))
    return m, hub, trader, reader

def _thirty_deltas(m, trader):
    for i in range(30):
        trader.handle({"op": "order", "cid": f"o{i}", "symbol": "DEMO", "side": "buy", "price": 90 + i, "qty": 1})
        m.flush()

@pytest.mark.parametrize("op", ["unsubscribe", "subscribe"])
def test_a_book_reader_behind_gets_no_snapshot_after_unsubscribing_nor_one_before_subscribed(tmp_path, op):
    m, hub, trader, reader = _trader_and_reader(tmp_path)
    reader.handle({"op": "subscribe", "channel": "book", "symbol": "DEMO"})
    hub.drain()
    reader.transport.backlog = 1 << 20  # behind: its deltas give way to a fresh snapshot
    _thirty_deltas(m, trader)
    assert set(reader.outbox.stale) == {"DEMO"}
    reader.handle({"op": op, "channel": "book", "symbol": "DEMO", "req": 2})
    sent = [(x["type"], x.get("req")) for x in reader.outbox.take(reader._snapshot) if x["type"] != "book"]
    m.close()
    assert sent == ([("unsubscribed", 2)] if op == "unsubscribe" else [("subscribed", 2), ("book_snapshot", None)])

def test_a_reader_behind_that_subscribes_gets_subscribed_before_the_snapshot_that_replaced_its_first(tmp_path):
    "Its subscription's snapshot and the deltas after it pass the limit: the fresh snapshot comes after `subscribed` (before: ahead of it)."
    m, hub, trader, reader = _trader_and_reader(tmp_path)
    reader.transport.backlog = 1 << 20  # behind before it subscribes
    reader.handle({"op": "subscribe", "channel": "book", "symbol": "DEMO", "req": 1})
    _thirty_deltas(m, trader)
    sent = [(x["type"], x.get("req")) for x in reader.outbox.take(reader._snapshot)]
    m.close()
    assert sent == [("subscribed", 1), ("book_snapshot", None)]

def test_a_reader_behind_that_subscribes_again_gets_subscribed_then_a_snapshot(tmp_path):
    "As a client that found a gap does, its older deltas still waiting: before, the fresh snapshot went ahead of `subscribed`, and only deltas after."
    m, hub, trader, reader = _trader_and_reader(tmp_path)
    reader.handle({"op": "subscribe", "channel": "book", "symbol": "DEMO", "req": 1})
    hub.drain()
    reader.transport.backlog = 1 << 20
    for i in range(3):  # waiting, within the limit
        trader.handle({"op": "order", "cid": f"w{i}", "symbol": "DEMO", "side": "sell", "price": 200 + i, "qty": 1})
        m.flush()
    reader.handle({"op": "subscribe", "channel": "book", "symbol": "DEMO", "req": 2})
    _thirty_deltas(m, trader)  # past it
    sent = [(x["type"], x.get("req")) for x in reader.outbox.take(reader._snapshot)]
    m.close()
    assert sent == [("subscribed", 2), ("book_snapshot", None)]

def test_a_subscription_that_would_pass_the_limit_of_a_client_behind_is_refused_not_closed(tmp_path):
    from aiplatform.core import load_settings
    from aiplatform.platform.auth import User
    from aiplatform.trading.service import Connection, Hub, market
    class Socket:  # `backlog` bytes behind
        backlog = 0
        def write(self, data): pass
        def is_closing(self): return False
        def get_write_buffer_size(self): return self.backlog
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "queue_limit": 10, "price_band_pct": 0})
    m = market(settings)
    hub = Hub(m)
    tess, vic = (Connection(m, hub, User(i, n, r, True, "", "", {}), settings, transport=Socket()) for i, n, r in ((1, "tess", "trader"), (2, "vic", "viewer")))
    tess.handle_frame([{"op": "order", "cid": "s", "symbol": "DEMO", "side": "sell", "price": 100, "qty": 5}] +
                      [{"op": "order", "cid": f"b{i}", "symbol": "DEMO", "side": "buy", "price": 100, "qty": 1} for i in range(5)])
    m.flush()  # a tape of 5 trades
    vic.transport.backlog = 1 << 20  # vic has fallen behind
    for pings, expected in ((5, ("error", 429)), (0, ("subscribed", None))):  # 5 waiting: with the subscription's two messages, 11 > 10
        vic.outbox.take(None)  # nothing waits
        vic.handle_frame([{"op": "ping", "req": i} for i in range(pings)] + [{"op": "subscribe", "channel": "trades", "symbol": "DEMO", "req": "sub"}])
        hub.drain()
        answer = next(a for a in vic.outbox.queue if a.get("req") == "sub")
        assert vic.outbox.closed is None and (answer["type"], answer.get("status")) == expected, (vic.outbox.closed, answer)  # before: closed, 11 waiting
    m.close()

def test_a_reader_that_reads_nothing_holds_no_more_than_the_backlog_in_its_socket(tmp_path):
    "The writer task waits while its socket holds `BACKLOG` bytes (before: aiohttp looked every 256 KiB, and 330 KB waited for a reader that read nothing)."
    from aiplatform.core import load_settings
    from aiplatform.trading.service import BACKLOG, HUB
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "queue_limit": 10, "send_buffer_kb": 4,
                                                                              "price_band_pct": 0, "rate": 100_000, "burst": 100_000})
    async def scenario():
        (app, runner, url), most = await _serving(settings), 0
        slow = await asyncio.to_thread(RawSocket, url, keys["vic"])
        slow.send({"op": "subscribe", "channel": "book", "symbol": "DEMO"})
        async with AsyncTradingClient(url, keys["tess"]) as tess:
            for i in range(6_000):  # a bid, then the ask that takes it: a delta each
                await tess.requests([order_message("DEMO", "buy" if i % 2 else "sell", 1, 100)])
                most = max([most] + [c.transport.get_write_buffer_size() for c in app[HUB].connections.values()])
        slow.sock.close()
        await runner.cleanup()
        return most
    assert asyncio.run(scenario()) <= BACKLOG + 4_096

def test_a_batch_followed_by_quiet_is_synced_within_the_interval(tmp_path):
    "`fsync = batch` syncs every 20 ms, though no batch follows (before: the last group waited for the next order, a snapshot or a stop)."
    from aiplatform.core import load_settings
    from aiplatform.trading.service import MARKET
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "price_band_pct": 0})
    async def scenario():
        app, runner, url = await _serving(settings)
        writer = app[MARKET].engine.journals["DEMO"].writer
        async with AsyncTradingClient(url, keys["tess"]) as c:
            for i in range(10):  # until one lands within 20 ms of the sync before: not synced by its own batch
                await c.order("DEMO", "buy", 1, 90 + i)
                if waiting := writer._unsynced: break
            await asyncio.sleep(0.1)
            left = writer._unsynced
        await runner.cleanup()
        return waiting, left
    waiting, left = asyncio.run(scenario())
    assert waiting and not left

def test_an_open_connection_whose_key_is_revoked_or_user_demoted_is_closed_with_the_reason(tmp_path, monkeypatch):
    "Read again every RECHECK_S (here 0.2 s); before, a connection opened before the change traded on for good. A connection of a key still good goes on."
    from aiplatform.core import load_settings
    from aiplatform.platform import auth
    from aiplatform.trading import service
    monkeypatch.setattr(service, "RECHECK_S", 0.2)
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO"})
    async def scenario():
        _, runner, url = await _serving(settings)
        sessions = {name: aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys[name]}"}) for name in ("tess", "tom", "ada")}
        sockets = {name: await s.ws_connect(url + "ws") for name, s in sessions.items()}
        auth.revoke_key(keys["tess"].split("_")[1], settings=settings)
        auth.set_role("tom", "viewer", settings=settings)
        async def ended(ws):
            async with asyncio.timeout(5):
                while (msg := await ws.receive()).type != aiohttp.WSMsgType.CLOSE: pass
            return msg.data, msg.extra  # the close frame's: the socket may be gone by the time the client answers it
        said = {name: await ended(sockets[name]) for name in ("tess", "tom")}
        await sockets["ada"].send_json({"op": "ping", "req": 1})
        ada = (await sockets["ada"].receive_json())["type"]
        for s in sessions.values(): await s.close()
        await runner.cleanup()
        return said, ada
    said, ada = asyncio.run(scenario())
    assert said == {"tess": (1008, "API key: unknown, revoked or of a disabled user"), "tom": (1008, "user 'tom': role now viewer, was trader; connect again")}
    assert ada == "pong"

def test_a_book_reader_that_reads_nothing_is_dropped_after_its_ping_goes_unanswered(tmp_path, monkeypatch):
    "Its deltas give way to a snapshot, so it never overflows; aiohttp ends it when a ping goes unanswered, and its socket, still full, is dropped `CLOSE_S` later (before: kept with its buffer for as long as the peer's TCP lived)."
    from aiplatform.core import load_settings
    from aiplatform.trading import service
    monkeypatch.setattr(service, "PING_S", 1.0), monkeypatch.setattr(service, "CLOSE_S", 0.5)
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO", "send_buffer_kb": 4, "price_band_pct": 0,
                                                                              "rate": 100_000, "burst": 100_000})
    async def scenario():
        app, runner, url = await _serving(settings)
        slow = await asyncio.to_thread(RawSocket, url, keys["vic"])
        slow.send({"op": "subscribe", "channel": "book", "symbol": "DEMO"})
        await asyncio.sleep(0.2)
        reader = next(iter(app[service.HUB].connections.values())).transport
        async with AsyncTradingClient(url, keys["tess"]) as tess:
            full = 0  # the most its socket held: on a loaded host its ping may go unanswered before the last order
            for i in range(1_000):
                await tess.requests([order_message("DEMO", "buy" if i % 2 else "sell", 1, 100)])
                full = max(full, reader.get_write_buffer_size())
            for _ in range(100):  # a ping, half a second for its pong, then CLOSE_S: 2 s on a quiet host
                if reader.is_closing() and not reader.get_write_buffer_size(): break
                await asyncio.sleep(0.1)
            left = reader.get_write_buffer_size(), reader.is_closing()
        slow.sock.close()
        await runner.cleanup()
        return full, left
    full, left = asyncio.run(scenario())
    assert full > 0 and left == (0, True)

def test_a_demoted_admin_is_refused_at_the_next_admin_request_or_request_for_another_account(tmp_path):
    from aiplatform.core import load_settings
    from aiplatform.platform import auth
    svc = start_trading(tmp_path, symbols="DEMO")
    svc.keys = make_users(tmp_path)
    try:
        assert call(svc, "GET", "orders?account=tess", user="ada")[0] == 200  # the key checked, and cached 10 s
        auth.set_role("ada", "trader", settings=load_settings(env={}, platform={"data_dir": tmp_path}))
        assert call(svc, "GET", "orders?account=tess", user="ada")[0] == 403  # another account's: before, 200 for 10 s more
        assert call(svc, "POST", "admin/symbols/DEMO/halt", user="ada")[0] == 403
    finally: stop(svc)

def test_the_websockets_query_names_an_unknown_or_repeated_parameter(svc):
    async def refused(query):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {svc.keys['tess']}"}) as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e: await session.ws_connect(svc.url + "ws?" + query)
            async with session.get(svc.url + "ws?" + query) as r: return e.value.status, (await r.json())["error"]
    assert asyncio.run(refused("colour=red")) == (400, "query parameter 'colour': unknown (expected cancel_on_disconnect)")
    assert asyncio.run(refused("cancel_on_disconnect=true&cancel_on_disconnect=false")) == (400, "query parameter 'cancel_on_disconnect': given 2 times, expected once")
    assert asyncio.run(refused("cancel_on_disconnect=maybe")) == (400, "cancel_on_disconnect 'maybe': expected true or false")

def test_closed_connections_are_freed_at_once_and_leave_no_empty_subscriber_sets(tmp_path, monkeypatch):
    """aiohttp 3.14 keeps an ended WebSocket in cycles (its heartbeat's callback; a dropped connection's error) that only a full
    collection frees, which the service makes rare: freed as the connection ends, closed or dropped, with no collection at all
    (before: 13 KB each held, wave after wave); asyncio's transports, cycles too, by a full collection once `COLLECT_AFTER` have
    closed; an account's subscriber set goes with its last subscriber (before: kept for every account that ever subscribed)."""
    import gc
    from aiohttp import web
    from aiplatform.core import load_settings
    from aiplatform.trading import service
    monkeypatch.setattr(service, "RECHECK_S", 0.2)
    monkeypatch.setattr(service, "COLLECT_AFTER", 40)
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO"})
    def transports(): return sum(type(o).__name__ == "_SelectorSocketTransport" and o.is_closing() for o in gc.get_objects())
    async def scenario():
        app, runner, url = await _serving(settings)
        gc.collect()
        gc.disable()
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['tess']}"}) as session:
                for _ in range(20):
                    ws = await session.ws_connect(url + "ws")
                    await ws.send_json([{"op": "subscribe", "channel": channel, "req": 1} for channel in ("orders", "positions")])
                    await _until(ws, lambda m: m.get("channel") == "positions")
                    await ws.close()
            for _ in range(19):  # dropped: no close frame
                raw = await asyncio.to_thread(RawSocket, url, keys["tess"])
                raw.send({"op": "subscribe", "channel": "book", "symbol": "DEMO"})
                await asyncio.sleep(0.05)
                raw.sock.close()
            end = asyncio.get_running_loop().time() + 5  # each handler ends once its client has gone
            while (left := sum(isinstance(o, web.WebSocketResponse) for o in gc.get_objects())) and asyncio.get_running_loop().time() < end:
                await asyncio.sleep(0.1)
            before = transports()
            raw = await asyncio.to_thread(RawSocket, url, keys["tess"])
            raw.sock.close()  # the 40th closed: collected at the next recheck
            end = asyncio.get_running_loop().time() + 5
            while (after := transports()) > 2 and asyncio.get_running_loop().time() < end: await asyncio.sleep(0.1)
        finally: gc.enable()
        tables = (app[service.HUB].orders, app[service.HUB].positions, app[service.HUB].books)
        await runner.cleanup()
        return left, before >= 39, after, tables
    left, closed, after, tables = asyncio.run(scenario())
    assert (left, closed, after <= 2, tables) == (0, True, True, ({}, {}, {}))  # the newest may still be closing

def test_a_client_that_leaves_during_the_handshake_is_no_error(tmp_path, caplog):
    "An upgrade sent with a good key, then a reset: before, a 500 logged with its traceback each time (anyone could fill the error log)."
    import logging, struct
    from aiplatform.core import load_settings
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO"})
    def leave(port):
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset on close
            s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {keys['tess']}\r\n\r\n".encode())
            s.close()
    async def scenario():
        _, runner, url = await _serving(settings)
        await asyncio.to_thread(leave, urlsplit(url).port)
        await asyncio.sleep(0.5)
        await runner.cleanup()
    with caplog.at_level(logging.WARNING): asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

def test_a_market_of_many_symbols_answers_in_proportion_to_what_is_held_and_its_full_disk_in_words(tmp_path, monkeypatch):
    "The positions channel's first message lists the positions held (was one a symbol); an unknown symbol's error names ten; a symbol the disk refuses is a 503."
    from aiplatform.core import load_settings
    from aiplatform.trading.market import Market
    keys = make_users(tmp_path)
    symbols = " ".join(f"S{i:03d}" for i in range(300))
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": symbols, "price_band_pct": 0})
    async def main():
        app, runner, url = await _serving(settings)
        try:
            async with AsyncTradingClient(url, keys["tess"]) as tess, AsyncTradingClient(url, keys["tom"]) as tom:
                await tom.order("S007", "sell", 2, 100)
                await tess.order("S007", "buy", 2, 100)
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['tess']}"}) as session, session.ws_connect(url + "ws") as ws:
                    await ws.send_json({"op": "subscribe", "channel": "positions"})
                    first = (await _until(ws, lambda m: m["type"] == "positions"))[-1]
                    assert [(p["symbol"], p["qty"]) for p in first["positions"]] == [("S007", 2)]
                    await ws.send_json({"op": "order", "cid": "x", "symbol": "NOPE", "side": "buy", "price": 1, "qty": 1})
                    reject = (await _until(ws, lambda m: m["type"] == "reject"))[-1]
                    assert reject["error"] == "symbol 'NOPE': not traded; symbols: S000, S001, S002, S003, S004, S005, S006, S007, S008, S009 and 290 more"
                def full(self): raise OSError(28, "No space left on device", str(tmp_path/"symbols.json"))
                monkeypatch.setattr(Market, "_save_symbols", full)
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['ada']}"}) as ada:
                    async with ada.post(url + "admin/symbols", json={"symbol": "NEW"}) as r: added = r.status, await r.json()
                    async with ada.post(url + "admin/symbols/S001/halt") as r: halted = r.status, await r.json()
                    async with ada.get(url + "symbols") as r: listed = [s["symbol"] for s in (await r.json())["symbols"]]
                assert added[0] == 503 and "symbol 'NEW': not added, nothing changed; the market's files cannot be written (No space left on device" in added[1]["error"]
                assert halted[0] == 503 and "symbol 'S001': halted now, but not saved" in halted[1]["error"]  # was a bare 500, "internal error"
                assert "NEW" not in listed and len(listed) == 300
        finally: await runner.cleanup()
    asyncio.run(main())

def test_a_limit_of_open_files_that_leaves_little_room_is_said_at_the_start_and_refused_accepts_once_a_minute(caplog, monkeypatch):
    import resource
    import aiplatform.trading.service as service
    monkeypatch.setattr(resource, "getrlimit", lambda what: (len(os.listdir("/proc/self/fd")) + 40, 1 << 20))
    service._check_files(type("M", (), {"specs": {"A": 1, "B": 2}})())
    assert re.search(r"2 symbols: \d+ files open of this process's limit of \d+, room for 4\d connections; raise the limit", caplog.text), caplog.text
    loop = asyncio.new_event_loop()
    try:
        service._quiet_accept_errors(loop)
        for _ in range(500): loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")})
        assert caplog.text.count("connections refused: [Errno 24] Too many open files") == 1
        loop.call_exception_handler({"message": "something else"})
        assert "something else" in caplog.text  # the others as before
    finally: loop.close()

def test_the_protocol_names_every_reason_an_order_can_end_with():
    "The status table of the trading.service notebook: every code the book, the risk limits and the bands give (invalid_op: no client sends a raw op; not_modifiable: a journal of matching rules 1 or 2 replays it, no client is told; risk_price_band: the service's engine has no band, its symbols' bands refuse a price before any batch, a 400)."
    import nbformat
    from aiplatform.trading.book import REASONS
    from aiplatform.trading.market import RISK_LIMITS
    cells = nbformat.read(Path(__file__).parents[2]/"nbs"/"trading"/"14_service.ipynb", 4).cells
    text = "".join(c.source for c in cells if c.cell_type == "markdown")
    assert [r for r in (*REASONS[1:], *RISK_LIMITS, "no_liquidity_in_band", "no_liquidity_within_max_notional") if r not in ("invalid_op", "not_modifiable", "risk_price_band") and f"`{r}`" not in text] == []

def test_a_client_whose_key_is_revoked_tries_again_once_a_minute_not_five_times_a_second(tmp_path, monkeypatch, caplog):
    "Each try costs the service a key check (a scrypt once it has restarted): 50 such clients held 0.9 of a core for as long as they lived."
    from aiplatform.core import load_settings
    from aiplatform.platform import auth
    from aiplatform.trading import service
    monkeypatch.setattr(service, "RECHECK_S", 0.2)
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO"})
    tries, socket_of = [], AsyncTradingClient._socket
    async def counted(self, shard):
        tries.append(time.monotonic())
        return await socket_of(self, shard)
    monkeypatch.setattr(AsyncTradingClient, "_socket", counted)
    async def scenario():
        _, runner, url = await _serving(settings)
        try:
            async with AsyncTradingClient(url, keys["tess"]) as tess:
                await tess.subscribe("orders")
                connected = len(tries)
                auth.revoke_key(keys["tess"].split("_")[1], settings=settings)
                await asyncio.sleep(2.5)  # closed within 0.2 s; then a try, refused
                return len(tries) - connected, tess.connected("DEMO")
        finally: await runner.cleanup()
    again, connected = asyncio.run(scenario())
    assert (again, connected) == (1, False) and "API key: unknown, revoked or of a disabled user; tried again every 60 s" in caplog.text, (again, caplog.text[-500:])

def test_a_handshake_cut_as_its_answer_is_written_is_no_error(tmp_path, caplog, monkeypatch):
    "The client gone as the 101 goes out (seen once in a storm of 500): the half-started WebSocket returned, aiohttp's close of it logged 'Call .prepare() first'."
    import logging
    from aiohttp import web
    from aiplatform.core import load_settings
    keys = make_users(tmp_path)
    settings = load_settings(env={}, platform={"data_dir": tmp_path}, trading={"symbols": "DEMO"})
    def cut(self, request, protocol, writer): raise ConnectionResetError("Cannot write to closing transport")
    monkeypatch.setattr(web.WebSocketResponse, "_post_start", cut)  # the answer's headers started, the WebSocket never set up
    async def scenario():
        _, runner, url = await _serving(settings)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys['tess']}"}) as session:
            with contextlib.suppress(aiohttp.ClientError): await session.ws_connect(url + "ws")
        await asyncio.sleep(0.2)
        await runner.cleanup()
    with caplog.at_level(logging.WARNING): asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

def test_an_admin_gives_an_account_limits_of_its_own_kept_across_a_restart(tmp_path):
    keys, service = make_users(tmp_path), start_trading(tmp_path, symbols="DEMO", price_band_pct=0)
    admin = SimpleNamespace(url=service.url, keys=keys)
    put = lambda body, user="ada", who="tom": call(admin, "PUT", f"admin/accounts/{who}/limits", user=user, body=body)
    try:
        assert call(admin, "POST", "orders", user="tom", body=dict(cid="own-1", symbol="DEMO", side="sell", price=100, qty=50))[0] == 200
        status, answer = put({"max_order_qty": 10, "max_open_orders": None})
        assert (status, answer["account"], answer["own"], answer["past"]) == (200, "tom", {"max_order_qty": 10}, {"DEMO": 1})  # its resting 50 stays
        assert answer["limits"] == call(admin, "GET", "me", user="tom")[1]["limits"] and answer["limits"]["max_order_qty"] == 10
        assert call(admin, "GET", "me", user="tess")[1]["limits"]["max_order_qty"] == 1_000_000  # another account: the shard's
        status, refused = call(admin, "POST", "orders", user="tom", body=dict(cid="own-2", symbol="DEMO", side="sell", price=100, qty=11))
        assert (status, refused["error"]) == (422, "order 'own-2': risk_max_order_qty: qty 11: expected a qty of at most 10 (the account's own max_order_qty, set by an admin)")
        async def over_websocket():
            async with AsyncTradingClient(service.url, keys["tom"]) as tom:
                with pytest.raises(OrderRejected, match="expected a qty of at most 10 .the account.s own"): await tom.order("DEMO", "sell", 11, 100)
                return await tom.order("DEMO", "sell", 10, 100)
        assert asyncio.run(over_websocket())["status"] == "open"
        for body, error in (({"max_order_qty": 0}, "max_order_qty 0: expected the largest qty of one order, from 1 to 1,000,000,000,000 (null: the shard's [trading] max_order_qty)"),
                            ({"max_notional": "5"}, "max_notional '5': "), ({"max_open_orders": 10**8}, "max_open_orders 100000000: expected the open orders one account"),
                            ({"max_orders": 1}, "max_orders: unknown field (expected max_order_qty, max_notional, max_open_orders, max_position)"), ([10], "request body")):
            status, answer = put(body)
            assert status == 400 and answer["error"].startswith(error), (body, answer)
        assert call(admin, "GET", "admin/accounts/tom/limits", user="ada")[1]["own"] == {"max_order_qty": 10}  # nothing changed by them
        assert put({"max_order_qty": 10**6}, user="tom")[0] == 403 and call(admin, "GET", "admin/accounts/tom/limits", user="tess")[0] == 403
        assert call(admin, "GET", "admin/accounts/nobody/limits", user="ada") == (404, {"error": "user 'nobody': no such user", "status": 404})
        assert call(admin, "GET", "admin/accounts/a%20b/limits", user="ada")[1]["error"] == "account 'a b': expected a username: 1 to 64 letters, digits, '.', '_' or '-'"
        assert "admin ada set account tom's own limits on this shard: {'max_order_qty': 10}; its open orders past them, by symbol: {'DEMO': 1}" in Path(service.log).read_text()
        stop(service)
        service = start_trading(tmp_path, symbols="DEMO", price_band_pct=0)  # restarted: kept
        admin.url = service.url
        assert call(admin, "GET", "admin/accounts/tom/limits", user="ada")[1] | {"limits": None} == {"account": "tom", "limits": None, "own": {"max_order_qty": 10}, "past": {"DEMO": 1}}
        status, answer = put({})  # none: the shard's again
        assert (status, answer["own"], answer["past"], answer["limits"]["max_order_qty"]) == (200, {}, {}, 1_000_000)
        assert call(admin, "POST", "orders", user="tom", body=dict(cid="own-3", symbol="DEMO", side="sell", price=100, qty=11))[1]["status"] == "open"
    finally: stop(service)

def test_a_users_connections_share_one_rate_limit(svc):
    """The rate limit is the user's, over all their connections to the shard: with 100 connections a user sent 100 times `[trading] rate`,
    and a viewer's frames of refused orders held the loop 0.8 s a turn. Another user's stays whole."""
    async def scenario():
        await asyncio.sleep(300 / 200)  # vic's and tom's buckets full again (burst 300, 200 a second), whatever the tests before sent
        (s1, a), (s2, b), (s3, c) = await _ws(svc, "vic"), await _ws(svc, "vic"), await _ws(svc, "tom")
        pings = lambda n: [{"op": "ping", "req": i} for i in range(n)]
        await a.send_json(pings(250))
        first = [m for m in await _until(a, lambda m: m.get("req") == 249) if m.get("req") is not None]
        began = time.monotonic()
        await b.send_json(pings(250))
        second = [m for m in await _until(b, lambda m: m.get("req") == 249) if m.get("req") is not None]
        await c.send_json(pings(250))
        other = [m for m in await _until(c, lambda m: m.get("req") == 249) if m.get("req") is not None]
        refill = (time.monotonic() - began) * 200
        for s in (s1, s2, s3): await s.close()
        return first, second, other, refill
    first, second, other, refill = asyncio.run(scenario())
    assert [m["type"] for m in first] == ["pong"] * 250 and [m["type"] for m in other] == ["pong"] * 250
    passed = sum(m["type"] == "pong" for m in second)
    assert 50 <= passed <= 50 + refill + 1 and second[-1]["status"] == 429, (passed, refill)  # what the first left, and what came back since

def test_an_accounts_reads_wait_once_they_have_looked_through_read_rows(tmp_path):
    """Pages of orders and fills and an orders subscription's first message cost the rows they look through ([trading] read_rows a second,
    bursts of twice as many): past them, the account's next read waits (429, saying how long), another account's does not. Before, each
    was one request of 1,000 a second, and one trader's pages of 10,000 done orders held the loop whole."""
    keys, service = make_users(tmp_path), start_trading(tmp_path, symbols="DEMO", read_rows=100, price_band_pct=0)
    svc = SimpleNamespace(url=service.url, keys=keys)
    try:
        async def cross():
            async with AsyncTradingClient(svc.url, keys["tess"]) as tess, AsyncTradingClient(svc.url, keys["tom"]) as tom:
                for i in range(60): await tess.order("DEMO", "sell", 1, 100), await tom.order("DEMO", "buy", 1, 100)
        asyncio.run(cross())
        status, page = call(svc, "GET", "fills?limit=100")
        assert status == 200 and len(page["fills"]) == 60  # looked through 60, returned 60: 120 of a burst of 200
        assert call(svc, "GET", "orders?status=done&limit=1")[0] == 200  # begun with 80 left; from the newest end: 2 looked at, 1 returned
        assert call(svc, "GET", "fills?limit=100")[0] == 200  # begun with 77 left: 43 past them now
        status, refused = call(svc, "GET", "orders?status=done&limit=1")
        assert status == 429 and refused["error"].startswith("reads past [trading] read_rows: 100 orders, fills or trades a second"), refused
        assert 0.3 < float(refused["error"].rpartition("wait ")[2].split()[0]) <= 0.44  # (1 + 43) rows at 100 a second, less what came back meanwhile
        assert call(svc, "GET", "fills?limit=100", user="tom")[0] == 200  # another account's reads
        async def subscribe():
            async with AsyncTradingClient(svc.url, keys["tess"]) as tess:
                with pytest.raises(RateLimited, match="reads past"): await tess.request("subscribe", channel="orders")
        asyncio.run(subscribe())
        time.sleep(0.5)
        assert call(svc, "GET", "orders?status=done&limit=1")[0] == 200  # made up
    finally: stop(service)

def test_a_connection_that_sends_on_past_the_rate_limit_is_closed_with_the_reason(tmp_path):
    """Each refusal says when to send again (`retry_after_s`); a client that sends on regardless, a burst's worth of messages refused (a frame's, if more) with no frame served whole between,
    is closed (each refusal answered costs the loop: a viewer's 100 connections of refused frames held it 0.6 s a turn). One that waits is served."""
    keys, service = make_users(tmp_path), start_trading(tmp_path, symbols="DEMO", rate=200, burst=300)
    svc = SimpleNamespace(url=service.url, keys=keys)
    async def scenario():
        session, ws = await _ws(svc, "vic")
        pings = [{"op": "ping", "req": i} for i in range(1_000)]
        await ws.send_json(pings)  # 300 pass, 700 refused
        first = await _until(ws, lambda m: m.get("req") == 999)
        await asyncio.sleep(first[-1]["retry_after_s"])
        await ws.send_json(pings[:10])  # waited as told: served
        assert [m["type"] for m in await _until(ws, lambda m: m.get("req") == 9)][-1] == "pong"
        for _ in range(3): await ws.send_json(pings)  # regardless: some pass as the bucket fills, 1,000 are refused
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT: pass
        await session.close()
        return msg
    try: msg = asyncio.run(scenario())
    finally: stop(service)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008 and msg.extra.startswith("rate limit: 1,") and "refused since a frame was last served whole" in msg.extra, msg
