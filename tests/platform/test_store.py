"Store: a new database at the newest schema, in-place upgrades without loss, round trips, on SQLite and PostgreSQL."
import glob, os, pwd, shutil, subprocess, tempfile, time
from pathlib import Path
import pytest
import sqlalchemy as sa
from aiplatform.core import ConfigError
from aiplatform.codegen import client as codegen
from aiplatform.core import get_settings
from aiplatform.codegen.sandbox import Check, TestRun
from aiplatform.platform.store import SCHEMA_VERSION, api_keys, generations, make_engine, migrate, schema_version, users
from database import postgres, url  # noqa: F401 (fixtures)

def columns(engine):
    insp = sa.inspect(engine)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in ("users", "api_keys", "generations")}

def test_new_database_is_at_newest_schema_matching_the_tables(url):
    engine = make_engine(url)
    assert schema_version(engine) == 0
    assert migrate(engine) == SCHEMA_VERSION == schema_version(engine)
    assert columns(engine) == {t.name: sorted(t.c.keys()) for t in (users, api_keys, generations)}
    assert migrate(engine) == SCHEMA_VERSION  # running it again is harmless

def test_upgrade_in_place_keeps_rows(url):
    engine = make_engine(url)
    migrate(engine, to=1)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (username, role, active, created_ns) VALUES ('ada', 'admin', true, 1), ('bob', 'viewer', false, 2)"))
        uid = conn.execute(sa.text("SELECT id FROM users WHERE username = 'ada'")).scalar_one()
        conn.execute(sa.text("INSERT INTO api_keys (user_id, key_id, key_hash, label, active, created_ns) "
                             "VALUES (:u, 'k1', 'h', 'l', true, 3)"), dict(u=uid))
    assert "email" not in [c["name"] for c in sa.inspect(engine).get_columns("users")]
    assert migrate(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users.c.username, users.c.role, users.c.active, users.c.email, users.c.profile)
                            .order_by(users.c.username)).all()
        assert conn.execute(sa.select(api_keys.c.key_id)).scalars().all() == ["k1"]
    assert [tuple(r) for r in rows] == [("ada", "admin", True, "", {}), ("bob", "viewer", False, "", {})]

def test_round_trip(url):
    engine = make_engine(url)
    migrate(engine)
    row = dict(username="zoe", role="trader", active=True, created_ns=time.time_ns(), display_name="Zoë Ω",
               email="zoe@example.org", profile={"desk": "rates", "limits": [1, 2.5], "note": "ünïcode"})
    with engine.begin() as conn: conn.execute(users.insert().values(**row))
    with engine.connect() as conn: got = conn.execute(sa.select(users).where(users.c.username == "zoe")).one()._asdict()
    assert {k: got[k] for k in row} == row

def test_newer_schema_is_refused(url):
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn: conn.execute(sa.text(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}"))
    with pytest.raises(ConfigError, match="newer than this aiplatform knows"): migrate(engine)

def test_url_without_driver_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[database\] url = 'oracle\+nope://u:\*\*\*\*@h/db'"): make_engine("oracle+nope://u:pw@h/db")

def test_generations_are_stored_and_searched(url, monkeypatch, tmp_path):
    monkeypatch.setenv("AIPLATFORM_DATABASE__URL", url)
    monkeypatch.setenv("AIPLATFORM_PLATFORM__DATA_DIR", str(tmp_path/"data"))
    get_settings(reload=True)
    try:
        migrate(make_engine(url))
        run = TestRun("passed", [dict(name="test_f", outcome="passed", duration_ms=1.5, error=None)], duration_ms=40.0)
        g = codegen.Generation("Double a number, 100% of the time", "claude-sonnet-5-5", code="def f(x):\n    return 2 * x\n",
                               checks=[Check(1, 1, "F401", "`os` imported but unused", False)], test_run=run, status="passed",
                               input_tokens=10, output_tokens=20, cost_usd=0.00033, latency_ms=812.5)
        gid = codegen.save_generation(g, source="api", username="ada")
        codegen.save_generation(codegen.Generation("Something else", "claude-opus-5", status="error", error="overloaded"))
        [found] = codegen.history("DOUBLE 100%")
        assert found.id == gid and found.test_run.tests[0]["name"] == "test_f" and found.checks[0].rule == "F401"
        assert (found.cost_usd, found.latency_ms, found.status) == (0.00033, 812.5, "passed")
        assert [h.prompt for h in codegen.history("else")] == ["Something else"] and codegen.history("10_%") == []
        assert [h.id for h in codegen.history(username="ada")] == [gid]
    finally:
        monkeypatch.undo()
        get_settings(reload=True)
