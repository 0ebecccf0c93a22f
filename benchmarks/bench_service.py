"""The trading service on loopback, end to end: a client's order over the WebSocket to its acknowledgement (after the
journal write), sustained orders per second from 100 clients (one order per frame, then 100 per frame), and book
deltas fanned out to 1,000 subscribers of one symbol. The peer in the same run is a bare echo server on the same
WebSocket library (aiohttp, `bench_ws.py`'s): `vs_echo` is our ack round trip over its echo round trip, the cost of
validation, client ids, the batch, the journal, matching and the answer; and the same 100 clients' orders echoed
back are the library's ceiling for orders per second on this machine. The orders per second are measured twice: on
one symbol, one process; and on two symbols of a market split over two shards (`[trading] shards = 2`), a process
each, half the clients on each: how the market grows past one core. The fanout's peer is a bare broadcaster on the
same library (`serve_broadcast`): a frame of a delta's shape and size written straight to each subscriber's socket, as
the service's `send_now` does, at the rate the service delivered; the same 1,000 subscribers read it. What it takes is
this machine's floor for 1,000 sends a delta; `fanout_vs_peer` is our delivery p99 over its.

The service and the echo server each run in their own process, the clients in this one (picows, so the client costs
little) and the book subscribers in another (plain sockets under one epoll loop, `read_books`); everything shares this
machine's cores. The last line is a JSON object. `--quick` (run by `make test`): a fraction of a second per figure,
10 clients and 10 subscribers.
"""
import argparse, asyncio, base64, gc, itertools, json, multiprocessing, os, platform, select, signal, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from picows import WSListener, WSMsgType, ws_connect

HERE = Path(__file__).parent

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait_port(port, proc, what):
    end = time.monotonic() + 60
    while True:
        try: return socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if proc.poll() is not None or time.monotonic() > end: raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)

def start_service(data, fsync, symbols="DEMO", shard=0, shards=1):
    "The trading service (shard `shard` of `shards`) on a free port, with limits that stay out of a benchmark's way."
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")} | {
        "AIPLATFORM_PLATFORM__DATA_DIR": str(data), "AIPLATFORM_TRADING__SYMBOLS": symbols, "AIPLATFORM_TRADING__FSYNC": fsync,
        "AIPLATFORM_TRADING__SHARD": str(shard), "AIPLATFORM_TRADING__SHARDS": str(shards),
        "AIPLATFORM_TRADING__PRICE_BAND_PCT": "0", "AIPLATFORM_TRADING__RATE": "10000000", "AIPLATFORM_TRADING__BURST": "10000000",
        "AIPLATFORM_TRADING__QUEUE_LIMIT": "1000000", "AIPLATFORM_TRADING__MAX_OPEN_ORDERS": "10000000",
        "AIPLATFORM_TRADING__CONNECTIONS": "1000000"}  # the fanout's 1,000 subscribers are ten users
    proc = subprocess.Popen([str(Path(sys.executable).parent/"aiplatform"), "service", "trading", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port, proc, "the trading service")
    return proc, f"ws://127.0.0.1:{port}/ws"

def start_echo():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE/"bench_ws.py"), "--serve", "aiohttp", "--port", str(port)], start_new_session=True)
    wait_port(port, proc, "the echo server")
    return proc, f"ws://127.0.0.1:{port}/ws"

def serve_broadcast(port, rate):
    """The fanout's peer, until killed: aiohttp WebSockets on `port`; each that has sent a message is written, `rate` times a
    second, one frame of a book delta's shape and size (ten levels changed), stamped and built once, straight to its transport
    (as the service's `send_now`, to none that has fallen behind)."""
    import orjson
    from aiohttp import web
    from aiplatform.trading.service import BACKLOG, wire
    subscribers = set()
    async def ws(request):
        w = web.WebSocketResponse()
        await w.prepare(request)
        async for _ in w: subscribers.add(request.transport)
        subscribers.discard(request.transport)
        return w
    async def broadcast(app):
        async def pace():
            seq, at = 0, time.monotonic()
            while True:
                at += 1 / rate
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                seq += 1
                frame = wire(orjson.dumps({"type": "book", "symbol": "DEMO", "seq": seq, "changes": [("bids", 50 + k, seq % 7 + k) for k in range(10)],
                                           "checksum": 3_000_000_000 + seq, "ns": time.time_ns()}))
                for t in list(subscribers):
                    if not t.is_closing() and t.get_write_buffer_size() <= BACKLOG: t.write(frame)  # as `send_now`: none to a reader behind
        task = asyncio.create_task(pace())
        yield
        task.cancel()
    app = web.Application()
    app.router.add_get("/ws", ws)
    app.cleanup_ctx.append(broadcast)
    web.run_app(app, host="127.0.0.1", port=port, print=None)

def start_broadcast(rate):
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-broadcast", str(rate), "--port", str(port)], start_new_session=True)
    wait_port(port, proc, "the broadcaster")
    return proc, f"ws://127.0.0.1:{port}/ws"

def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)

def users(data, n) -> list[str]:
    "API keys of `n` traders in `data`'s store."
    from aiplatform.core import load_settings
    from aiplatform.platform.auth import add_user, create_key
    settings = load_settings(env={}, platform={"data_dir": data})
    keys = []
    for i in range(n):
        add_user(f"bench{i}", "trader", settings=settings)
        keys.append(create_key(f"bench{i}", settings=settings))
    return keys

RUN = itertools.count()  # client order ids differ from run to run: a repeated id is answered, not traded

class Orders(WSListener):
    "Sends orders in `symbol` (`per_frame` to a frame, `window` frames in flight) and counts their acknowledgements (`answer`s)."
    answer = b'"type":"ack"'
    def __init__(self, name, per_frame=1, window=1, symbol="DEMO"):
        name = f"{name}.{os.getpid()}.{next(RUN)}"
        self.name, self.per_frame, self.window, self.symbol, self.n, self.acks, self.rtts, self.sent = name, per_frame, window, symbol, 0, 0, [], []
        self.running, self.transport, self.unanswered = False, None, 0

    def frame(self) -> bytes:
        orders = []
        for _ in range(self.per_frame):
            self.n += 1
            orders.append(f'{{"op":"order","cid":"{self.name}-{self.n}","symbol":"{self.symbol}","side":"{"buy" if self.n % 2 else "sell"}","price":100,"qty":1}}')
        return (orders[0] if self.per_frame == 1 else "[" + ",".join(orders) + "]").encode()

    def send(self):
        self.sent.append(time.perf_counter_ns())
        self.transport.send(WSMsgType.TEXT, self.frame())

    def on_ws_connected(self, transport): self.transport = transport

    def on_ws_frame(self, transport, frame):
        if frame.msg_type != WSMsgType.TEXT: return
        now, acks = time.perf_counter_ns(), frame.get_payload_as_bytes().count(self.answer)
        self.acks, self.unanswered = self.acks + acks, self.unanswered + acks
        while self.unanswered >= self.per_frame and self.sent:  # a whole frame of orders answered
            self.unanswered -= self.per_frame
            self.rtts.append(now - self.sent.pop(0))
            if self.running: self.send()

    def start(self):
        self.running = True
        for _ in range(self.window): self.send()

async def connect(url, key, factory):
    return (await ws_connect(factory, url, extra_headers={"Authorization": f"Bearer {key}"}))[1]

async def round_trips(url, key, seconds) -> dict:
    "One order at a time: ack round trip p50 and p99 in microseconds."
    client = await connect(url, key, lambda: Orders("rt"))
    client.send()  # the first order waits for the matching loop's compilation (or its load from Numba's cache)
    async with asyncio.timeout(300):
        while not client.acks: await asyncio.sleep(0.01)
    client.rtts.clear()
    client.start()
    await asyncio.sleep(seconds)
    client.running = False
    await asyncio.sleep(0.05)
    client.transport.disconnect()
    rtts = sorted(client.rtts[len(client.rtts) // 10:])  # past the warm-up
    return {"p50_us": rtts[len(rtts) // 2] / 1e3, "p99_us": rtts[int(len(rtts) * 0.99)] / 1e3, "n": len(rtts)}

class Echo(Orders):
    "The same round trip against an echo server: the frame comes back instead of an ack."
    def on_ws_frame(self, transport, frame):
        self.rtts.append(time.perf_counter_ns() - self.sent.pop(0))
        if self.running: self.send()

async def echo_trips(url, seconds) -> dict:
    transport, client = await ws_connect(lambda: Echo("echo"), url)
    client.start()
    await asyncio.sleep(seconds)
    client.running = False
    await asyncio.sleep(0.05)
    transport.disconnect()
    rtts = sorted(client.rtts[len(client.rtts) // 10:])
    return {"p50_us": rtts[len(rtts) // 2] / 1e3, "p99_us": rtts[int(len(rtts) * 0.99)] / 1e3}

class EchoedOrders(Orders):
    "The same load against the echo server: each order comes back as it went."
    answer = b'"op":"order"'

async def throughput(urls, keys, clients, per_frame, window, seconds, kind=Orders, symbols=("DEMO",)) -> float:
    "Acknowledged (or, with `kind=EchoedOrders`, echoed) orders per second from `clients` connections; client i trades `symbols[i % n]` on `urls[i % n]`."
    conns = [await connect(urls[i % len(urls)], keys[i % len(keys)], lambda i=i: kind(f"c{i}-{per_frame}", per_frame, window, symbols[i % len(symbols)]))
             for i in range(clients)]
    for c in conns: c.start()
    await asyncio.sleep(seconds / 5)  # warm-up
    start, acks = time.perf_counter(), sum(c.acks for c in conns)
    await asyncio.sleep(seconds)
    rate = (sum(c.acks for c in conns) - acks) / (time.perf_counter() - start)
    for c in conns: c.running = False
    await asyncio.sleep(0.2)
    for c in conns: c.transport.disconnect()
    return rate

def ws_handshake(port, key) -> tuple:
    "A WebSocket to the service's /ws on `port` as `key`'s user, by hand (RFC 6455): the socket and the bytes past the handshake."
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        if not (more := sock.recv(4096)): raise RuntimeError(f"the service closed the connection during the handshake: {head[:200]!r}")
        head += more
    head, rest = head.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"): raise RuntimeError(f"no WebSocket: {head[:200]!r}")
    return sock, rest

def masked_text(payload: bytes) -> bytes:
    "A client's text frame (masked, as a client's must be) of fewer than 126 bytes."
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))

def ws_frames(chunks):
    "(ns, opcode, payload) of each whole frame in one socket's `chunks` of (ns received, bytes), ns that of the chunk its last byte came in."
    buf, i = bytearray(), 0
    for ns, data in chunks:
        buf += data
        while len(buf) - i >= 2:
            n, at = buf[i + 1] & 0x7F, i + 2
            if n == 126: n, at = int.from_bytes(buf[i + 2:i + 4], "big"), i + 4
            elif n == 127: n, at = int.from_bytes(buf[i + 2:i + 10], "big"), i + 10
            if len(buf) < at + n: break
            yield ns, buf[i] & 0x0F, bytes(buf[at:at + n])
            i = at + n

def read_books(port, keys, n, seconds, pipe):
    """`n` book subscribers of DEMO in this process for `seconds`, each delta's publication time and delay sent back through `pipe`, and
    the publication times each subscriber was sent.
    Lean, so that the subscribers' own queueing is not what is measured (on this machine they share the cores with the service):
    plain sockets under one epoll loop that only notes when each chunk came; the frames are parsed after the run."""
    socks = {}
    for i in range(n):
        sock, rest = ws_handshake(port, keys[i % len(keys)])
        sock.sendall(masked_text(b'{"op":"subscribe","channel":"book","symbol":"DEMO"}'))
        sock.setblocking(False)
        socks[sock.fileno()] = (sock, [(0, rest)])
    poll = select.epoll()
    for fd in socks: poll.register(fd, select.EPOLLIN)
    pipe.send("subscribed")
    gc.disable()  # the chunks kept are hundreds of thousands of tuples: a collection's pause would be what is measured
    end, now = time.monotonic() + seconds, time.time_ns
    while time.monotonic() < end:
        for fd, _ in poll.poll(0.05):
            sock, chunks = socks[fd]
            try: data = sock.recv(1 << 18)
            except BlockingIOError: continue
            except ConnectionError: data = b""
            if data: chunks.append((now(), data))
            else: poll.unregister(fd)  # closed by the service: nothing more to read
    delays, deltas = [], []
    for sock, chunks in socks.values():
        deltas.append([])
        for ns, opcode, payload in ws_frames(chunks):
            at = 0
            while opcode == 1 and (at := payload.find(b'"type":"book",', at)) != -1:  # each delta's "ns"
                j = payload.index(b'"ns":', at) + 5
                published = int(payload[j:payload.index(b"}", j)])
                delays.append((published, ns - published))
                deltas[-1].append(published)
                at = j
        sock.close()
    pipe.send((delays, deltas))

async def fanout(url, keys, subscribers, rate, seconds) -> dict:
    """`subscribers` on one symbol (`read_books`, in a process of their own) while orders come at `rate` a second, each changing the
    book's top levels; with `rate` 0, the subscribers of the bare broadcaster at `url`, which paces itself."""
    here, there = multiprocessing.Pipe()
    readers = multiprocessing.get_context("fork").Process(target=read_books, args=(int(url.split(":")[2].split("/")[0]), keys, subscribers, seconds + 1.5, there))
    readers.start()
    assert await asyncio.to_thread(here.recv) == "subscribed"
    writer = await connect(url + "?cancel_on_disconnect=true", keys[0], lambda: Orders("fan")) if rate else None  # its resting orders go with it: each run meets the same empty book
    await asyncio.sleep(0.5)
    start, sent, since = time.perf_counter(), 0, time.time_ns()
    warm, until = since + int(seconds / 10 * 1e9), since + int(seconds * 1e9)  # the first tenth: the warm-up, as `round_trips`
    while rate and (elapsed := time.perf_counter() - start) < seconds:
        while sent < elapsed * rate:  # paced: orders at distinct prices below the market, each a delta
            sent += 1
            writer.transport.send(WSMsgType.TEXT, f'{{"op":"order","cid":"{writer.name}-{sent}","symbol":"DEMO","side":"buy","price":{50 + sent % 10},"qty":1}}'.encode())
        await asyncio.sleep(0.001)
    delays, deltas = await asyncio.to_thread(here.recv)
    readers.join()
    if writer: writer.transport.disconnect()
    delays = sorted(delay for published, delay in delays if warm <= published < until)
    return {"p50_ms": delays[len(delays) // 2] / 1e6, "p99_ms": delays[int(len(delays) * 0.99)] / 1e6,
            "deltas_per_s": statistics.median(sum(since <= p < until for p in ps) for ps in deltas) / seconds, "orders_per_s": sent / seconds}

def sharded(data, clients, seconds, runs) -> dict:
    "Orders per second, one per frame and 100 per frame, from `clients` trading two symbols on a market of two shards."
    from aiplatform.trading.market import shard_of
    symbols = ["DEMO", next(s for s in ("ACME", "EURUSD", "GOOG") if shard_of(s, 2) != shard_of("DEMO", 2))]  # one on each shard
    data.mkdir()
    keys = users(data, 10)
    shards = [start_service(data, "batch", " ".join(symbols), k, 2) for k in (0, 1)]
    try:
        urls = [shards[shard_of(s, 2)][1] for s in symbols]
        return {name: statistics.median(asyncio.run(throughput(urls, keys, clients, per_frame, window, seconds, symbols=symbols)) for _ in range(runs))
                for per_frame, window, name in ((1, 4, "single_2_shards"), (100, 2, "batched_2_shards"))}
    finally:
        for service, _ in shards: stop(service)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a fraction of a second per figure, few clients")
    ap.add_argument("--serve-broadcast", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_broadcast: return serve_broadcast(args.port, args.serve_broadcast)
    seconds, runs, clients, subscribers = (0.3, 1, 10, 10) if args.quick else (3.0, 3, 100, 1000)
    data = Path(tempfile.mkdtemp())
    echo, echo_url = start_echo()
    figures = {}
    try:
        for fsync in ("batch", "always"):
            (data/fsync).mkdir()
            keys = users(data/fsync, 10)
            service, url = start_service(data/fsync, fsync)
            try:
                rt = [asyncio.run(round_trips(url, keys[0], seconds)) for _ in range(runs)]
                figures[fsync] = {k: statistics.median(r[k] for r in rt) for k in ("p50_us", "p99_us")}
                if fsync == "batch":
                    ec = [asyncio.run(echo_trips(echo_url, seconds)) for _ in range(runs)]
                    figures["echo"] = {k: statistics.median(r[k] for r in ec) for k in ("p50_us", "p99_us")}
                    figures["single"] = statistics.median(asyncio.run(throughput([url], keys, clients, 1, 4, seconds)) for _ in range(runs))
                    figures["batched"] = statistics.median(asyncio.run(throughput([url], keys, clients, 100, 2, seconds)) for _ in range(runs))
                    for per_frame, window, name in ((1, 4, "echo_single"), (100, 2, "echo_batched")):  # the library's ceiling
                        figures[name] = statistics.median(asyncio.run(throughput([echo_url], keys, clients, per_frame, window, seconds, EchoedOrders))
                                                          for _ in range(runs))
                    fo = [asyncio.run(fanout(url, keys, subscribers, 10_000, seconds)) for _ in range(runs)]
                    figures["fanout"] = {k: statistics.median(r[k] for r in fo) for k in fo[0]}
            finally: stop(service)
        figures.update(sharded(data/"sharded", clients, seconds, runs))
        peer, peer_url = start_broadcast(figures["fanout"]["deltas_per_s"])  # at the rate the service delivered: the same sends a second
        try:
            pe = [asyncio.run(fanout(peer_url, keys, subscribers, 0, seconds)) for _ in range(runs)]
            figures["fanout_peer"] = {k: statistics.median(r[k] for r in pe) for k in pe[0]}
        finally: stop(peer)
    finally: stop(echo)
    b, e, fo, fp = figures["batch"], figures["echo"], figures["fanout"], figures["fanout_peer"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; clients in one process "
          f"(picows), book subscribers in another (epoll), medians of {runs} runs of {seconds:g} s")
    print(f"{'order -> ack round trip':<44}{'p50':>10}{'p99':>10}")
    print(f"{'  service, fsync = batch':<44}{b['p50_us']:>8.0f}us{b['p99_us']:>8.0f}us")
    print(f"{'  service, fsync = always':<44}{figures['always']['p50_us']:>8.0f}us{figures['always']['p99_us']:>8.0f}us")
    print(f"{'  bare aiohttp echo (peer)':<44}{e['p50_us']:>8.0f}us{e['p99_us']:>8.0f}us   service / echo: {b['p50_us'] / e['p50_us']:.2f}x")
    print(f"orders/s from {clients} clients, one per frame: {figures['single']:>9,.0f}   bare echo: {figures['echo_single']:>9,.0f}   "
          f"service / echo: {figures['single'] / figures['echo_single']:.2f}")
    print(f"orders/s from {clients} clients, 100 per frame: {figures['batched']:>9,.0f}   bare echo: {figures['echo_batched']:>9,.0f}   "
          f"service / echo: {figures['batched'] / figures['echo_batched']:.2f}")
    print(f"orders/s from {clients} clients on two symbols, a market of 2 shards (a process each): one per frame: "
          f"{figures['single_2_shards']:>9,.0f} ({figures['single_2_shards'] / figures['single']:.2f}x one shard), 100 per frame: "
          f"{figures['batched_2_shards']:>9,.0f} ({figures['batched_2_shards'] / figures['batched']:.2f}x)")
    print(f"book fanout to {subscribers} subscribers, {fo['orders_per_s']:,.0f} orders/s offered: {fo['deltas_per_s']:,.0f} deltas/s "
          f"delivered to each, delay p50 {fo['p50_ms']:.1f} ms, p99 {fo['p99_ms']:.1f} ms")
    print(f"  bare broadcast to the same subscribers (peer), {fp['deltas_per_s']:,.0f} deltas/s each: delay p50 {fp['p50_ms']:.1f} ms, "
          f"p99 {fp['p99_ms']:.1f} ms   service / peer (p99): {fo['p99_ms'] / fp['p99_ms']:.2f}x")
    print(json.dumps({"ack_p50_us": round(b["p50_us"], 1), "ack_p99_us": round(b["p99_us"], 1),
                      "ack_p50_us_fsync_always": round(figures["always"]["p50_us"], 1), "ack_p99_us_fsync_always": round(figures["always"]["p99_us"], 1),
                      "echo_p50_us": round(e["p50_us"], 1), "orders_per_s_single": round(figures["single"]),
                      "orders_per_s_batched": round(figures["batched"]), "orders_per_s_single_2_shards": round(figures["single_2_shards"]),
                      "orders_per_s_batched_2_shards": round(figures["batched_2_shards"]), "echo_orders_per_s_single": round(figures["echo_single"]),
                      "echo_orders_per_s_batched": round(figures["echo_batched"]), "fanout_p99_ms": round(fo["p99_ms"], 2),
                      "fanout_deltas_per_s": round(fo["deltas_per_s"]), "fanout_peer_p99_ms": round(fp["p99_ms"], 2),
                      "fanout_vs_peer": round(fo["p99_ms"] / fp["p99_ms"], 2), "vs_echo": round(b["p50_us"] / e["p50_us"], 2)}))

if __name__ == "__main__":
    main()
