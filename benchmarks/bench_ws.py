"""WebSocket libraries on loopback, to choose the trading service's: an echo server written with each of tornado (the
Jupyter stack's), aiohttp and picows, each in its own process, driven by one client (picows, the same for all).

Two figures per library: the round trip of one small text message with nothing else in flight (p50 and p99 over the
run), and messages per second echoed with 100 in flight over one connection (small order-sized JSON text frames).
tornado is the reference: each ratio says how many times tornado's figure the library reaches. The last line is a
JSON object. `--quick` (run by `make test`): a fraction of a second per figure.
"""
import argparse, asyncio, json, os, platform, signal, socket, statistics, subprocess, sys, time

MESSAGE = b'{"op":"order","cid":"c-000001","symbol":"EURUSD","side":"buy","price":10850,"qty":100}'
LIBRARIES = ("tornado", "aiohttp", "picows")

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def serve(library: str, port: int):
    "Run an echo server with `library` on `port` until killed."
    if library == "tornado":
        import tornado.ioloop, tornado.web, tornado.websocket
        class Echo(tornado.websocket.WebSocketHandler):
            def on_message(self, message): self.write_message(message)
        tornado.web.Application([(r"/ws", Echo)]).listen(port, "127.0.0.1")
        tornado.ioloop.IOLoop.current().start()
    elif library == "aiohttp":
        from aiohttp import web
        async def echo(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws: await ws.send_str(msg.data)
            return ws
        app = web.Application()
        app.router.add_get("/ws", echo)
        web.run_app(app, host="127.0.0.1", port=port, print=None)
    else:
        from picows import WSListener, WSMsgType, ws_create_server
        class Echo(WSListener):
            def on_ws_frame(self, transport, frame):
                if frame.msg_type == WSMsgType.CLOSE: transport.disconnect()
                else: transport.send(frame.msg_type, frame.get_payload_as_bytes())
        async def main():
            server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port)
            await server.serve_forever()
        asyncio.run(main())

async def drive(url: str, seconds: float) -> dict:
    "Round trips with one message in flight, then messages per second with 100 in flight, against `url`."
    from picows import WSListener, WSMsgType, ws_connect
    loop = asyncio.get_running_loop()
    class Client(WSListener):
        def __init__(self): self.sent, self.rtts, self.count, self.window, self.done, self.end = 0, [], 0, 1, None, 0.0
        def on_ws_frame(self, transport, frame):
            now = time.perf_counter_ns()
            if self.window == 1: self.rtts.append(now - self.sent)
            self.count += 1
            if now >= self.end: return self.done.set_result(None) if self.count >= self.expected else None
            self.expected += 1
            self.sent = now
            transport.send(WSMsgType.TEXT, MESSAGE)
        def run(self, transport, window, seconds):
            self.window, self.count, self.expected, self.done = window, 0, window, loop.create_future()
            self.end = time.perf_counter_ns() + int(seconds * 1e9)
            self.sent = time.perf_counter_ns()
            for _ in range(window): transport.send(WSMsgType.TEXT, MESSAGE)
            return self.done
    transport, client = await ws_connect(Client, url)
    await client.run(transport, 1, seconds)
    rtts = sorted(client.rtts)
    start = time.perf_counter()
    await client.run(transport, 100, seconds)
    rate = client.count / (time.perf_counter() - start)
    transport.disconnect()
    return {"rtt_p50_us": rtts[len(rtts) // 2] / 1e3, "rtt_p99_us": rtts[int(len(rtts) * 0.99)] / 1e3, "msgs_per_s": rate}

def measure(library: str, seconds: float) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", library, "--port", str(port)], start_new_session=True)
    try:
        end = time.monotonic() + 30
        while True:
            try: socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
            except OSError:
                if server.poll() is not None or time.monotonic() > end: raise RuntimeError(f"{library}: the echo server did not start")
                time.sleep(0.05)
        asyncio.run(drive(f"ws://127.0.0.1:{port}/ws", seconds / 4))  # warm-up
        return asyncio.run(drive(f"ws://127.0.0.1:{port}/ws", seconds))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a fraction of a second per figure")
    ap.add_argument("--serve", choices=LIBRARIES, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve: return serve(args.serve, args.port)
    seconds, runs = (0.3, 1) if args.quick else (3.0, 3)
    rows = {}
    for library in LIBRARIES:
        results = [measure(library, seconds) for _ in range(runs)]
        rows[library] = {k: statistics.median(r[k] for r in results) for k in results[0]}
    ref = rows["tornado"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"one client (picows), median of {runs} runs of {seconds:g} s")
    print(f"{'library':<10}{'RTT p50':>10}{'RTT p99':>10}{'msgs/s (100 in flight)':>25}{'vs tornado':>12}")
    for library, r in rows.items():
        print(f"{library:<10}{r['rtt_p50_us']:>8.0f}us{r['rtt_p99_us']:>8.0f}us{r['msgs_per_s']:>25,.0f}"
              f"{r['msgs_per_s'] / ref['msgs_per_s']:>11.2f}x")
    print(json.dumps({f"{lib}_{k}": round(v, 1) for lib, r in rows.items() for k, v in r.items()}))

if __name__ == "__main__":
    main()
