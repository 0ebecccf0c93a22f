"Security review findings on the gateway (issue 10): no proxy to arbitrary ports, security headers on every page, API and proxied service, a SameSite login cookie, culled and capped kernels, bad text and deep JSON refused by the code API, bounded request bodies."
import json, os, re, select, socket, time, urllib.parse
from http.client import HTTPConnection
import pytest
from conftest import free_port, http, start_gateway, stop_gateway

IDLE, MAX_KERNELS, BODY_TIMEOUT = 4, 2, 3  # short limits so that the tests see them act

@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory.mktemp("security"), f"kernel_idle_timeout = {IDLE}\nmax_kernels = {MAX_KERNELS}\n",
                      f"[limits]\nbody_timeout = {BODY_TIMEOUT}\n")
    yield g
    stop_gateway(g)

def address(gw): return gw.url.split("//")[1].rstrip("/").split(":")

def request(gw, method, path, body=None, headers=None, timeout=10):
    "Status, headers and body of one request with a short timeout; (None, None, error) when the connection fails or times out."
    host, port = address(gw)
    conn = HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, "/" + path, body, headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    except OSError as e: return None, None, e
    finally: conn.close()

def open_fds(gw): return len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
def rss_mb(gw): return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{gw.proc.pid}/status").read())[1]) / 1024

def test_the_proxy_reaches_registered_services_only(gw):
    auth = {"Authorization": f"token {gw.token}"}
    own, other = address(gw)[1], free_port()
    before = open_fds(gw)
    for path in (f"proxy/{own}/api/status", f"proxy/absolute/{own}/api/status", f"proxy/127.0.0.1:{own}/api/status",
                 f"proxy/absolute/localhost:{own}/api/status", f"proxy/{other}/api", f"proxy/localhost:{other}/x"):
        start = time.monotonic()
        status, _, body = request(gw, "GET", path, headers=auth)
        assert status in (403, 404) and time.monotonic() - start < 5, (path, status, body)
    assert http(gw.url + "aiplatform/api/health")[0] == 200
    assert open_fds(gw) <= before + 10
    status, _, body = http(gw.url + "aiplatform/echo/health", token=gw.token)
    assert status == 200 and body["service"] == "echo"
    status, _, body = http(gw.url + "server-proxy/servers-info", token=gw.token)
    assert "aiplatform/echo" in [s["name"] for s in body["server_processes"]]

@pytest.mark.parametrize("path", ["aiplatform/api/health", "lab", "aiplatform/apps/voila/render/index.ipynb", "aiplatform/echo/health", "nope"])
def test_pages_apis_and_proxied_services_carry_the_security_headers(gw, path):
    "The gateway's pages and API, the apps' pages proxied from their own server, a service behind the proxy, an error."
    status, headers, _ = http(gw.url + path, token=gw.token)
    assert status in (200, 404), (path, status)
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert headers["X-Frame-Options"] in ("SAMEORIGIN", "DENY")
    assert re.search(r"frame-ancestors '(self|none)'", headers["Content-Security-Policy"]), headers["Content-Security-Policy"]

def login_cookie(headers):
    "The Set-Cookie header of Jupyter's login cookie (named username-<host>-<port>)."
    [cookie] = [c for c in headers.get_all("Set-Cookie") if c.startswith("username-")]
    return cookie

def test_the_login_cookie_is_samesite_and_httponly(gw):
    status, headers, _ = request(gw, "GET", "login")
    xsrf = re.search(r"_xsrf=([^;]+)", headers["Set-Cookie"])[1]
    form = urllib.parse.urlencode({"_xsrf": xsrf, "password": gw.token})
    status, headers, _ = request(gw, "POST", "login", form, {"Cookie": f"_xsrf={xsrf}",
                                                            "Content-Type": "application/x-www-form-urlencoded"})
    cookie = login_cookie(headers)
    assert status == 302 and "SameSite=Lax" in cookie and "HttpOnly" in cookie, cookie
    status, headers, _ = request(gw, "GET", f"lab?token={gw.token}")  # a login by the token in the URL sets it too
    cookie = login_cookie(headers)
    assert status == 200 and "SameSite=Lax" in cookie and "HttpOnly" in cookie, cookie

def kernels(gw): return http(gw.url + "api/kernels", token=gw.token)[2]

def test_kernels_never_connected_are_capped_then_culled(gw):
    auth = {"Authorization": f"token {gw.token}"}
    for _ in range(MAX_KERNELS):  # started, their websocket never opened
        status, _, body = request(gw, "POST", "api/kernels", "{}", auth, timeout=60)
        assert status == 201, (status, body[:300])
    assert len(kernels(gw)) == MAX_KERNELS
    status, _, body = request(gw, "POST", "api/kernels", "{}", auth)
    assert status == 503 and f"at most {MAX_KERNELS} ([server] max_kernels)".encode() in body, body
    started = time.monotonic()
    while kernels(gw) and time.monotonic() - started < IDLE + 15: time.sleep(0.5)
    assert kernels(gw) == []
    status, _, _ = request(gw, "POST", "api/kernels", "{}", auth, timeout=60)
    assert status == 201  # below the cap again

def test_the_gateway_renders_no_notebook_with_voila(gw):
    "Voilà's server extension would run any notebook of the workspace in a kernel that takes code: the apps have their own Voilà."
    status, _, _ = request(gw, "GET", "voila/render/apps/index.ipynb", headers={"Authorization": f"token {gw.token}"})
    assert status == 404, status

DEEP = b"[" * 100_000 + b"]" * 100_000

@pytest.mark.parametrize("body,field", [
    (DEEP, "request body:"),
    (b'{"prompt": ' + DEEP + b"}", "request body:"),
    (b'{"prompt": "\\ud800"}', "prompt:"),
    (b'{"prompt": "x", "model": "claude-\\udfff"}', "model:"),
    (b'{"prompt": "x", "context": [{"label": "In[1] \\ud800", "text": "x = 1"}]}', "context[0].label:"),
    (b'{"prompt": "x", "context": [{"label": "In[1]", "text": "x = \\udc00"}]}', "context[0].text:"),
    (b'{"prompt": "x", "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\ud83d"}]}',
     "history[1].content:"),
])
def test_deep_json_and_lone_surrogates_are_400_naming_the_field(gw, body, field):
    status, _, answer = request(gw, "POST", "aiplatform/api/codegen/generate", body,
                            {"Authorization": f"token {gw.token}", "Content-Type": "application/json"}, timeout=30)
    answer = json.loads(answer)
    assert (status, answer["status"]) == (400, 400) and answer["error"].startswith(field), answer
    assert http(gw.url + "aiplatform/api/health")[0] == 200

def raw(gw, timeout=10):
    "A plain socket to the gateway."
    host, port = address(gw)
    return socket.create_connection((host, int(port)), timeout=timeout)

def answer_or_close(s, timeout):
    "The first bytes the server sends, b'' when it closes the connection, None when neither happens in `timeout` seconds."
    s.settimeout(timeout)
    try: return s.recv(200)
    except ConnectionResetError: return b""
    except TimeoutError: return None

def test_a_huge_body_is_refused_by_its_declared_length_before_it_is_read(gw):
    before = rss_mb(gw)
    with raw(gw) as s:
        s.sendall(f"POST /aiplatform/api/codegen/generate HTTP/1.1\r\nHost: {gw.url.split('//')[1].rstrip('/')}\r\n"
                  f"Authorization: token {gw.token}\r\nContent-Type: application/json\r\nContent-Length: {300 << 20}\r\n\r\n".encode())
        got = answer_or_close(s, 10)
    assert got is not None and (got == b"" or re.match(rb"HTTP/1.1 (400|413)", got)), got
    with raw(gw) as s:  # sent without a length, in chunks: cut off once past the limit, never buffered whole
        s.sendall(f"POST /aiplatform/api/codegen/generate HTTP/1.1\r\nHost: x\r\nAuthorization: token {gw.token}\r\n"
                  f"Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk, sent = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n", 0
        try:
            while sent < 300:
                s.sendall(chunk)
                sent += 1
        except OSError: pass
    assert sent < 300 and rss_mb(gw) - before < 150, (sent, rss_mb(gw) - before)
    assert http(gw.url + "aiplatform/api/health")[0] == 200

@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_request_trickled_byte_by_byte_is_cut_off(gw, part):
    head = f"POST /aiplatform/api/codegen/generate HTTP/1.1\r\nHost: x\r\nAuthorization: token {gw.token}\r\nContent-Length: 1000\r\n"
    with raw(gw) as s:
        if part == "body": s.sendall(head.encode() + b"\r\n")
        trickle, started = (head * 50 if part == "headers" else "x" * 1000).encode(), time.monotonic()
        for i in range(len(trickle)):
            if time.monotonic() - started > BODY_TIMEOUT + 12: break
            if select.select([s], [], [], 0.3)[0]: break  # the server answered or closed the connection
            try: s.send(trickle[i:i + 1])
            except OSError: break
        took = time.monotonic() - started
    assert took < BODY_TIMEOUT + 8, took

def test_an_app_pages_kernel_runs_no_code_sent_to_it(gw, tmp_path):
    "A visitor who opens an app page's kernel channels and sends it code: the code never runs (standalone Voilà passes only widget messages); the rest still pass."
    import asyncio, aiohttp
    status, _, page = http(gw.url + "aiplatform/apps/voila/render/status.ipynb", token=gw.token)
    assert status == 200, status
    kernel = re.search(r'kernelId["\\]*:\s*["\\]*"?([0-9a-f-]{36})', page.decode() if isinstance(page, bytes) else page)[1]
    mark = tmp_path/"ran"
    url = gw.url.replace("http", "ws") + f"aiplatform/apps/api/kernels/{kernel}/channels"
    def message(msg_type, content):
        header = {"msg_id": msg_type, "msg_type": msg_type, "username": "visitor", "session": "visitor", "version": "5.3",
                  "date": "2026-01-01T00:00:00.000000Z"}
        return {"channel": "shell", "header": header, "parent_header": {}, "metadata": {}, "content": content}
    async def talk():
        seen = []
        async with aiohttp.ClientSession(headers={"Authorization": f"token {gw.token}"}) as s, s.ws_connect(url) as ws:
            await ws.send_json(message("execute_request", {"code": f"open({str(mark)!r}, 'w').write('code ran')", "silent": False,
                                                          "store_history": False, "user_expressions": {}, "allow_stdin": False}))
            await ws.send_json(message("kernel_info_request", {}))
            end = asyncio.get_running_loop().time() + 8
            while (left := end - asyncio.get_running_loop().time()) > 0:
                try: m = await ws.receive(timeout=left)
                except asyncio.TimeoutError: break
                if m.type != aiohttp.WSMsgType.TEXT: break
                seen.append(m.data)
        return seen
    seen = asyncio.run(talk())
    assert any('"kernel_info_reply"' in m for m in seen), seen[:3]
    assert not mark.exists() and not any('"execute_reply"' in m for m in seen), seen
