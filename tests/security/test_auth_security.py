"Security review (issue 10): API key checks take as long for an unknown key id as for a wrong secret, and keys can expire."
import re, statistics, time
from datetime import datetime, timedelta, timezone
import pytest
import sqlalchemy as sa
from aiplatform.platform import auth
from aiplatform.platform.auth import add_user, check_bearer, create_key, list_keys, parse_expiry, verify_key
from aiplatform.core import Unauthorized, ValidationError, load_settings
from aiplatform.platform.store import api_keys, make_engine, migrate, now_ns, schema_heads
from conftest import cli

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, limits={"keys_per_user": 2})

def test_unknown_key_id_takes_as_long_as_a_wrong_secret(s):
    add_user("ada", settings=s)
    _, key_id, secret = create_key("ada", settings=s).split("_", 2)
    wrong_secret = f"aip_{key_id}_{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"
    unknown_id = f"aip_{'0' * 16 if key_id != '0' * 16 else '1' * 16}_{secret}"
    times = {wrong_secret: [], unknown_id: []}
    for _ in range(9):  # interleaved, so a slow moment of the machine hits both
        for key, spent in times.items():
            start = time.perf_counter()
            with pytest.raises(Unauthorized, match="unknown, revoked or of a disabled user"): verify_key(key, settings=s)
            spent.append(time.perf_counter() - start)
    ratio = statistics.median(times[unknown_id]) / statistics.median(times[wrong_secret])
    assert 0.5 < ratio < 2, {k[:20]: [round(t * 1000, 1) for t in v] for k, v in times.items()}

def test_parse_expiry():
    now = now_ns()
    assert parse_expiry("30d", now) == now + 30 * 86400 * 10**9
    assert parse_expiry("12h", now) == now + 12 * 3600 * 10**9
    assert parse_expiry("2w", now) == now + 14 * 86400 * 10**9
    year = datetime.now(timezone.utc).year + 1
    assert parse_expiry(f"{year}-01-31", now) == int(datetime(year, 1, 31, tzinfo=timezone.utc).timestamp()) * 10**9
    assert parse_expiry(f"{year}-01-31T18:00+01:00", now) == int(datetime(year, 1, 31, 17, tzinfo=timezone.utc).timestamp()) * 10**9
    assert parse_expiry(datetime.now(timezone.utc) + timedelta(days=1), now) > now
    for bad, words in [("soon", "expected a duration like 30d"), ("30x", "expected a duration"), ("３０d", "expected a duration"),
                       ("2000-01-01", "has passed"), ("0d", "has passed"), ("9999-01-01", "at most 100 years ahead"),
                       ("40000d", "at most 100 years ahead")]:
        with pytest.raises(ValidationError, match=re.escape(f"expires {bad!r}: ")) as e: parse_expiry(bad, now)
        assert words in str(e.value), str(e.value)

def test_expired_key_is_refused_with_its_reason(s, monkeypatch):
    add_user("ada", settings=s)
    key, forever = create_key("ada", "ci", settings=s, expires="1h"), create_key("ada", settings=s)
    assert check_bearer(f"Bearer {key}", settings=s).username == "ada"
    listed = {k["label"]: k for k in list_keys("ada", settings=s)}
    assert listed["ci"]["expires_ns"] > now_ns() and not listed["ci"]["expired"] and listed[""]["expires_ns"] is None
    later = now_ns() + 2 * 3600 * 10**9
    monkeypatch.setattr(auth, "now_ns", lambda: later)
    with pytest.raises(Unauthorized, match=rf"API key {key.split('_')[1]}: expired at \d{{4}}-\d\d-\d\d \d\d:\d\d UTC"):
        check_bearer(f"Bearer {key}", settings=s)
    with pytest.raises(Unauthorized, match="unknown, revoked"):  # the reason only for whoever holds the secret
        check_bearer(f"Bearer {key[:-1]}{'A' if key[-1] != 'A' else 'B'}", settings=s)
    assert check_bearer(f"Bearer {forever}", settings=s).username == "ada"
    assert {k["label"]: k["expired"] for k in list_keys("ada", settings=s)} == {"ci": True, "": False}
    create_key("ada", settings=s)  # an expired key does not count towards [limits] keys_per_user = 2

def test_key_expiry_is_validated(s):
    add_user("ada", settings=s)
    for bad in ("yesterday", "2000-01-01"):
        with pytest.raises(ValidationError, match=re.escape(f"expires {bad!r}")): create_key("ada", settings=s, expires=bad)
    assert list_keys("ada", settings=s) == []

def test_expiry_on_sqlite_and_postgresql(url, tmp_path, monkeypatch):
    migrate(make_engine(url))
    s = load_settings(env={}, platform={"data_dir": tmp_path/"data"}, database={"url": url})
    add_user("ada", settings=s)
    key = create_key("ada", settings=s, expires="30d")
    [listed] = list_keys("ada", settings=s)
    assert abs(listed["expires_ns"] - (now_ns() + 30 * 86400 * 10**9)) < 60 * 10**9
    assert verify_key(key, settings=s).username == "ada"
    monkeypatch.setattr(auth, "now_ns", lambda: listed["expires_ns"] + 1)
    with pytest.raises(Unauthorized, match="expired at"): verify_key(key, settings=s)

def test_upgrade_keeps_keys_that_never_expire(url):
    engine = make_engine(url)
    migrate(engine, to="platform_0002")  # the platform's branch before key expiry
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (username, role, active, created_ns) VALUES ('ada', 'admin', true, 1)"))
        conn.execute(sa.text("INSERT INTO api_keys (user_id, key_id, key_hash, label, active, created_ns) "
                             "VALUES ((SELECT id FROM users), 'k1', 'h', 'l', true, 3)"))
    assert "expires_ns" not in [c["name"] for c in sa.inspect(engine).get_columns("api_keys")]
    assert migrate(engine) == schema_heads()
    with engine.connect() as conn: assert conn.execute(sa.select(api_keys.c.key_id, api_keys.c.expires_ns)).all() == [("k1", None)]

def test_users_cli_key_expiry(env):
    assert cli("init", env=env).returncode == 0
    assert cli("users", "add", "grace", env=env).returncode == 0
    r = cli("users", "key", "grace", "--label", "ci", "--expires", "30d", env=env)
    assert r.returncode == 0 and r.stdout.startswith("aip_"), r.stderr
    key_id = r.stdout.split("_")[1]
    year = datetime.now(timezone.utc).year + 2
    r = cli("users", "key", "grace", "--label", "laptop", "--expires", f"{year}-06-30", env=env)
    assert r.returncode == 0, r.stderr
    r = cli("users", "key", "grace", "--expires", "soon", env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "expires 'soon': expected a duration like 30d" in r.stderr
    when = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%d")
    lines = {l.split()[0]: l for l in cli("users", "keys", "grace", env=env).stdout.splitlines()}
    assert re.search(rf"active\s+expires {when} \d\d:\d\d UTC\s+ci$", lines[key_id]), lines
    assert any(re.search(rf"active\s+expires {year}-06-30 00:00 UTC\s+laptop$", l) for l in lines.values()), lines
    admin = cli("users", "keys", "admin", env=env).stdout
    assert re.search(r"active\s+expires never\s+first run$", admin), admin
