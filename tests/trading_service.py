"The trading service run as `aiplatform service trading` runs it, with users of each role and their API keys."
import asyncio, base64, json, os, signal, socket, struct, subprocess, threading
from types import SimpleNamespace
from conftest import BIN, clean_env, free_port, wait_for
from aiplatform.core import load_settings
from aiplatform.platform.auth import add_user, create_key

ROLES = {"ada": "admin", "tess": "trader", "tom": "trader", "vic": "viewer"}

def make_users(data_dir) -> dict:
    "A user of each role in `data_dir`'s store; their API keys by name."
    settings = load_settings(env={}, platform={"data_dir": data_dir})
    keys = {}
    for name, role in ROLES.items():
        add_user(name, role, settings=settings)
        keys[name] = create_key(name, settings=settings)
    return keys

def start_trading(data_dir, port=None, limits=None, env=None, **trading) -> SimpleNamespace:
    "Start the trading service on `port` (a free one by default) with `[trading]` settings `trading` (and `[limits]` ones `limits`, and more environment `env`); its URL and process."
    port = port or free_port()
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=data_dir, **{f"AIPLATFORM_TRADING__{k.upper()}": v for k, v in trading.items()},
                    **{f"AIPLATFORM_LIMITS__{k.upper()}": v for k, v in (limits or {}).items()}, **(env or {}))
    log = open(os.path.join(data_dir, f"trading-{port}.log"), "w")
    proc = subprocess.Popen([str(BIN/"aiplatform"), "service", "trading", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    wait_for(url + "health", proc, timeout=60)
    return SimpleNamespace(url=url, proc=proc, log=log.name)

def stop(service, sig=signal.SIGTERM):
    if service.proc.poll() is None:
        os.killpg(service.proc.pid, sig)
        service.proc.wait(30)

class RawSocket:
    """A WebSocket client on a plain socket with a small receive buffer that reads only when asked: a truly slow
    reader (aiohttp's client keeps reading into its own buffer)."""
    def __init__(self, url, key, rcvbuf=4096):
        host, port = url.split("//")[1].rstrip("/").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((host, int(port)))
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Authorization: Bearer {key}\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf: self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def send(self, message):
        "Send `message` (JSON, or bytes as they are) as one masked text frame."
        data, mask = message if isinstance(message, bytes) else json.dumps(message).encode(), os.urandom(4)
        n = len(data)
        head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x81, 0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _need(self, n):
        while len(self.buf) < n: self.buf += self.sock.recv(1 << 16)

    def messages(self) -> list:
        "The messages of the next frame."
        self._need(2)
        n, at = self.buf[1] & 0x7F, 2
        if n == 126: self._need(4); n, at = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127: self._need(10); n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(at + n)
        opcode, payload, self.buf = self.buf[0] & 0x0F, self.buf[at:at + n], self.buf[at + n:]
        if opcode == 8: raise ConnectionError(f"closed by the service: {struct.unpack('>H', payload[:2])[0]} {payload[2:].decode()}")
        if opcode != 1: return []  # a ping
        data = json.loads(payload)
        return data if isinstance(data, list) else [data]

class Proxy:
    """A TCP proxy to the service on `url`, on its own thread: once `cut(...)` is called, the next bytes from the client (or
    from the service) are dropped and the connection they came on cut (the network fails mid-request); with `silent`
    set, what clients send goes nowhere (a service that stops answering); with `deaf` set, what the service sends goes
    nowhere (a link half gone); `abort()` cuts every connection; with `gateway_down` set, a new connection is answered 502
    (a gateway whose service is restarting); `delay` seconds hold up each chunk a client sends (a service far away)."""
    def __init__(self, url):
        self.port, self.silent, self.deaf, self.gateway_down, self._cut, self._open = int(url.rstrip("/").rsplit(":", 1)[1]), False, False, False, None, []
        self.delay = 0.0
        self.loop, ready = asyncio.new_event_loop(), threading.Event()
        def main():
            self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()
        threading.Thread(target=main, daemon=True).start()
        ready.wait()
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    def cut(self, from_service=False, skip=0, holding=None):
        "Cut the connection that carries the next bytes from the client (or the service) that hold the bytes `holding` (any, if None), past `skip` such writes let through first."
        self._cut = [from_service, skip, holding]

    def abort(self): self.loop.call_soon_threadsafe(lambda: [w.transport.abort() for w in self._open])

    async def _serve(self, client_reader, client_writer):
        if self.gateway_down:
            await client_reader.read(1 << 16)
            body = b'{"error": "the trading service is restarting"}'
            client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            await client_writer.drain()
            return client_writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._open += [client_writer, writer]
        async def pipe(source, sink, from_service):
            try:
                while data := await source.read(1 << 16):
                    if (self.deaf if from_service else self.silent): continue
                    if self.delay and not from_service: await asyncio.sleep(self.delay)
                    if self._cut and self._cut[0] == from_service and (self._cut[2] is None or self._cut[2] in data):
                        if self._cut[1]: self._cut[1] -= 1
                        else:
                            self._cut = None
                            client_writer.transport.abort(), writer.transport.abort()
                            return
                    sink.write(data)
                    await sink.drain()
            except OSError: pass
            finally: sink.close()
        await asyncio.gather(pipe(client_reader, writer, False), pipe(reader, client_writer, True))
