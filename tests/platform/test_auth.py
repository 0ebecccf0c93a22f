"Users and API keys: creation, hashing at rest, refusal of wrong, revoked and disabled keys, roles, and the CLI."
import re
import pytest
from aiplatform.platform.auth import (ROLES, add_user, check_bearer, create_key, ensure_admin, list_keys, list_users, revoke_key, set_active,
                             verify_key)
from aiplatform.core import Conflict, Forbidden, NotFound, Unauthorized, ValidationError, load_settings
from conftest import cli

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, limits={"keys_per_user": 2})

def test_key_is_shown_once_and_stored_hashed(s):
    add_user("ada", "trader", settings=s)
    key = create_key("ada", "desk", settings=s)
    assert re.fullmatch(r"aip_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    key_id, secret = key.split("_", 2)[1:]
    db = b"".join(p.read_bytes() for p in s.data_dir.glob("aiplatform.db*"))  # the database and its write-ahead log
    assert secret.encode() not in db and b"scrypt$16384$8$1$" in db
    [listed] = list_keys("ada", settings=s)
    assert listed["key_id"] == key_id and secret not in str(listed) and listed["last_used_ns"] is None
    assert verify_key(key, settings=s).username == "ada"
    assert list_keys("ada", settings=s)[0]["last_used_ns"] is not None

@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "token aip_0123456789abcdef_x",
                                    "Bearer aip_0123456789abcdef_" + "A" * 43, "Bearer not-a-key", "Bearer " + "x" * 5000])
def test_wrong_credentials_are_refused(s, header):
    add_user("ada", settings=s)
    create_key("ada", settings=s)
    with pytest.raises(Unauthorized): check_bearer(header, settings=s)

def test_tampered_revoked_and_disabled_keys_are_refused(s):
    add_user("ada", "analyst", settings=s)
    key, other = create_key("ada", settings=s), create_key("ada", settings=s)
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(Unauthorized): check_bearer(f"Bearer {tampered}", settings=s)
    revoke_key(key.split("_")[1], settings=s)
    with pytest.raises(Unauthorized): check_bearer(f"Bearer {key}", settings=s)
    assert check_bearer(f"Bearer {other}", settings=s).username == "ada"
    set_active("ada", False, settings=s)
    with pytest.raises(Unauthorized): check_bearer(f"Bearer {other}", settings=s)
    set_active("ada", True, settings=s)
    assert check_bearer(f"Bearer {other}", settings=s).username == "ada"
    with pytest.raises(NotFound): revoke_key("0000000000000000", settings=s)

def test_roles(s):
    keys = {}
    for role in ROLES:
        add_user(f"u{role}", role, settings=s)
        keys[role] = f"Bearer {create_key(f'u{role}', settings=s)}"
    assert check_bearer(keys["admin"], "trader", settings=s).role == "admin"  # an admin holds every role
    assert check_bearer(keys["trader"], "trader", "analyst", settings=s).role == "trader"
    assert check_bearer(keys["viewer"], settings=s).role == "viewer"  # no roles asked: any active user
    for role in ("analyst", "viewer"):
        with pytest.raises(Forbidden, match="needs one of trader"): check_bearer(keys[role], "trader", settings=s)

def test_user_fields_are_validated_and_nothing_is_lost(s):
    add_user("ada", "analyst", "Ada", "ada@example.org", {"desk": "fx"}, settings=s)
    for kwargs, words in [(dict(username="x"), "username 'x'"), (dict(username="ada"), "already taken"),
                          (dict(username="bob", role="root"), "role 'root'"),
                          (dict(username="bob", email="nope"), "email 'nope'"),
                          (dict(username="bob", display_name="x" * 101), "display_name: 101 characters, at most 100"),
                          (dict(username="bob", profile={"a": "x" * 5000}), "at most 4096 bytes"),
                          (dict(username="bob", profile={"a": object()}), "profile: expected JSON")]:
        with pytest.raises((ValidationError, Conflict), match=re.escape(words)): add_user(settings=s, **kwargs)
    with pytest.raises(ValidationError, match=r"holds 2 active keys, at most 2 \(\[limits\] keys_per_user\)"):
        for _ in range(3): create_key("ada", settings=s)
    assert [u.username for u in list_users(s)] == ["ada"]

def test_first_admin_key_file_is_private(s):
    path = ensure_admin(s)
    assert path.stat().st_mode & 0o777 == 0o600
    assert check_bearer("Bearer " + path.read_text().strip(), "admin", settings=s).username == "admin"
    assert ensure_admin(s) is None

def test_users_cli(env):
    assert cli("init", env=env).returncode == 0
    r = cli("users", "add", "grace", "--role", "trader", "--name", "Grace H", "--email", "grace@example.org", env=env)
    assert r.returncode == 0 and "added grace (trader)" in r.stdout
    r = cli("users", "add", "grace", env=env)
    assert r.returncode == 2 and "username 'grace': already taken" in r.stderr
    r = cli("users", "key", "grace", "--label", "laptop", env=env)
    key = r.stdout.strip()
    assert r.returncode == 0 and key.startswith("aip_") and "shown once" in r.stderr
    r = cli("users", "keys", "grace", env=env)
    _, key_id, secret = key.split("_", 2)  # the secret itself may contain "_"
    assert key_id in r.stdout and secret not in r.stdout and "laptop" in r.stdout
    assert "disabled" in cli("users", "disable", "grace", env=env).stdout
    listing = cli("users", "list", env=env).stdout
    assert re.search(r"admin\s+admin\s+active", listing) and re.search(r"grace\s+trader\s+disabled", listing)
    assert cli("users", "key", "grace", env=env).returncode == 2
    assert cli("users", "disable", "nobody", env=env).returncode == 2
