"""Store: Alembic migrations, one version branch per tool: a new database at every head, in-place upgrades without loss
(from databases made before Alembic too), a tool without migrations, a test tool's branch beside the platform's, round
trips, on SQLite and PostgreSQL."""
import time
import pytest
import sqlalchemy as sa
from aiplatform.core import ConfigError, load_settings, tools as installed_tools
from aiplatform.codegen import client as codegen
from aiplatform.core import get_settings
from aiplatform.codegen.client import generations
from aiplatform.jobs.runs import job_runs, job_schedules
from aiplatform.resume.store import resumes
from aiplatform.codegen.sandbox import Check, TestRun
from aiplatform.platform.registry import PLATFORM, Tool
from aiplatform.platform.status import database_status
from aiplatform.platform.store import (api_keys, downgrade, make_engine, migrate, migration_folders, schema_heads, schema_version,
                                       users)
from conftest import PLUGINS, cli, clean_env

HEADS = {"codegen": "codegen_0001", "jobs": "jobs_0002", "platform": "platform_0003", "resume": "resume_0001"}

def columns(engine):
    insp = sa.inspect(engine)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in ("users", "api_keys", "generations", "job_runs", "job_schedules", "resumes")}

def revisions(engine):
    with engine.connect() as conn: return sorted(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())

def test_new_database_is_at_every_head_matching_the_tables(url, tmp_path):
    engine = make_engine(url)
    s = load_settings(env={}, platform={"data_dir": tmp_path}, database={"url": url})
    assert schema_heads() == HEADS and schema_version(engine) == {"codegen": None, "jobs": None, "platform": None, "resume": None}
    assert database_status(s)["detail"] == "behind: codegen at nothing, head codegen_0001; jobs at nothing, head jobs_0002; platform at nothing, head platform_0003; resume at nothing, head resume_0001: run `aiplatform init`"
    assert migrate(engine) == HEADS == schema_version(engine)
    assert columns(engine) == {t.name: sorted(t.c.keys()) for t in (users, api_keys, generations, job_runs, job_schedules, resumes)}
    assert revisions(engine) == sorted(HEADS.values()) and not sa.inspect(engine).has_table("schema_version")
    assert migrate(engine) == HEADS  # running it again is harmless
    assert (database_status(s)["ok"], database_status(s)["detail"], database_status(s)["schema"]) == (True, "ok", HEADS)

def test_upgrade_in_place_keeps_rows(url):
    engine = make_engine(url)
    assert migrate(engine, to="platform_0001") == {"codegen": None, "jobs": None, "platform": "platform_0001", "resume": None}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (username, role, active, created_ns) VALUES ('ada', 'admin', true, 1), ('bob', 'viewer', false, 2)"))
        uid = conn.execute(sa.text("SELECT id FROM users WHERE username = 'ada'")).scalar_one()
        conn.execute(sa.text("INSERT INTO api_keys (user_id, key_id, key_hash, label, active, created_ns) "
                             "VALUES (:u, 'k1', 'h', 'l', true, 3)"), dict(u=uid))
    assert "email" not in [c["name"] for c in sa.inspect(engine).get_columns("users")]
    assert migrate(engine) == HEADS
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users.c.username, users.c.role, users.c.active, users.c.email, users.c.profile)
                            .order_by(users.c.username)).all()
        assert conn.execute(sa.select(api_keys.c.key_id)).scalars().all() == ["k1"]
    assert [tuple(r) for r in rows] == [("ada", "admin", True, "", {}), ("bob", "viewer", False, "", {})]

# The schema as the code before Alembic made it: a `schema_version` table over one list of migrations, copied here
# from the old aiplatform.platform.store (which is gone), to make the databases that `migrate` adopts in place.
def _old_add_column(conn, table, column):
    ddl = f"ALTER TABLE {table} ADD COLUMN {column.name} {column.type.compile(dialect=conn.dialect)}"
    if column.server_default is not None: ddl += f" DEFAULT '{column.server_default.arg}'"
    if not column.nullable: ddl += " NOT NULL"
    conn.execute(sa.text(ddl))

def _old_v1_users_and_keys(conn):
    m = sa.MetaData()
    sa.Table("users", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(32), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False))
    sa.Table("api_keys", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(200), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("last_used_ns", sa.BigInteger))
    m.create_all(conn)

def _old_v2_profiles(conn):
    for column in (sa.Column("display_name", sa.String(100), nullable=False, server_default=""),
                   sa.Column("email", sa.String(254), nullable=False, server_default=""),
                   sa.Column("profile", sa.JSON, nullable=False, server_default="{}")): _old_add_column(conn, "users", column)

def _old_v3_generations(conn):
    m = sa.MetaData()
    sa.Table("generations", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False, index=True),
        sa.Column("username", sa.String(32)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("notebook", sa.String(500)),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("tests", sa.Text, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("test_run", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float, nullable=False))
    m.create_all(conn)

def _old_v4_key_expiry(conn):
    _old_add_column(conn, "api_keys", sa.Column("expires_ns", sa.BigInteger))

OLD_MIGRATIONS = [_old_v1_users_and_keys, _old_v2_profiles, _old_v3_generations, _old_v4_key_expiry]
_old_version_table = sa.Table("schema_version", sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))

def old_migrate(engine, to):
    "Make a database as the code before Alembic did, at schema_version `to`."
    with engine.begin() as conn:
        _old_version_table.create(conn)
        conn.execute(_old_version_table.insert().values(version=0))
    for version in range(1, to + 1):
        with engine.begin() as conn:
            OLD_MIGRATIONS[version - 1](conn)
            conn.execute(_old_version_table.update().values(version=version))

@pytest.mark.parametrize("version", [3, 4])
def test_a_database_from_before_alembic_is_adopted_with_its_rows(url, version):
    engine = make_engine(url)
    old_migrate(engine, version)
    expires = ", expires_ns" if version == 4 else ""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (username, role, active, created_ns, display_name, email, profile) "
                             """VALUES ('ada', 'admin', true, 1, 'Ada L.', 'ada@example.org', '{"desk": "fx"}')"""))
        conn.execute(sa.text(f"INSERT INTO api_keys (user_id, key_id, key_hash, label, active, created_ns{expires}) "
                             f"VALUES ((SELECT id FROM users), 'k1', 'scrypt$h', 'laptop', true, 3{', 99' if expires else ''})"))
        conn.execute(sa.text("INSERT INTO generations (created_ns, username, source, prompt, context, model, language, answer, code, "
                             "tests, checks, status, rounds, input_tokens, output_tokens, latency_ms) VALUES (5, 'ada', 'api', "
                             """'Double it', '', 'claude-opus-5', 'python', 'a', 'def f(x): return 2 * x', '', '[{"rule": "F401"}]', """
                             "'passed', 1, 10, 20, 812.5)"))
    assert schema_version(engine) == {"codegen": None, "jobs": None, "platform": None, "resume": None}
    assert migrate(engine) == HEADS and revisions(engine) == sorted(HEADS.values())
    assert not sa.inspect(engine).has_table("schema_version")
    assert columns(engine) == {t.name: sorted(t.c.keys()) for t in (users, api_keys, generations, job_runs, job_schedules, resumes)}
    with engine.connect() as conn:
        assert tuple(conn.execute(sa.select(users.c.username, users.c.display_name, users.c.email, users.c.profile)).one()) == \
            ("ada", "Ada L.", "ada@example.org", {"desk": "fx"})
        assert tuple(conn.execute(sa.select(api_keys.c.key_id, api_keys.c.key_hash, api_keys.c.expires_ns)).one()) == \
            ("k1", "scrypt$h", 99 if version == 4 else None)
        assert tuple(conn.execute(sa.select(generations.c.prompt, generations.c.checks, generations.c.latency_ms)).one()) == \
            ("Double it", [{"rule": "F401"}], 812.5)
    assert migrate(engine) == HEADS

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
    with engine.begin() as conn: conn.execute(sa.text("UPDATE alembic_version SET version_num = 'platform_0099' WHERE version_num = 'platform_0003'"))
    with pytest.raises(ConfigError, match=r"revision 'platform_0099' of tool platform is newer than this aiplatform knows \(its newest: 'platform_0003'\)"):
        migrate(engine)

def test_a_schema_version_after_4_is_refused(url):
    engine = make_engine(url)
    old_migrate(engine, 4)
    with engine.begin() as conn: conn.execute(sa.text("UPDATE schema_version SET version = 5"))
    with pytest.raises(ConfigError, match="schema_version = 5: expected 0 to 4, the versions made before Alembic"): migrate(engine)

def test_a_tool_without_migrations_has_no_branch(url):
    engine = make_engine(url)
    bare = {"platform": PLATFORM, "bare": Tool("bare", "Bare")}
    assert migration_folders(bare).keys() == {"platform"} and schema_heads(bare) == {"platform": "platform_0003"}
    assert migrate(engine, tools=bare) == {"platform": "platform_0003"} == schema_version(engine, bare)
    assert revisions(engine) == ["platform_0003"] and not sa.inspect(engine).has_table("generations")
    assert migrate(engine) == HEADS  # codegen's branch joins later, beside it

def test_a_tools_branch_is_upgraded_alongside_then_left_or_removed(url, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import echo_tool
    with_echo = installed_tools() | {"echo": echo_tool.TOOL}
    engine = make_engine(url)
    assert schema_heads(with_echo) == HEADS | {"echo": "echo_0001"}
    assert migrate(engine, to="platform_0002") == {"codegen": None, "jobs": None, "platform": "platform_0002", "resume": None}
    assert migrate(engine, tools=with_echo) == HEADS | {"echo": "echo_0001"}
    with engine.begin() as conn: conn.execute(sa.text("INSERT INTO echoes (text, created_ns) VALUES ('hi', 1)"))
    assert migrate(engine) == HEADS  # echo uninstalled: its revision and table stay, untouched
    assert revisions(engine) == ["codegen_0001", "echo_0001", "jobs_0002", "platform_0003", "resume_0001"]
    with engine.connect() as conn: assert conn.execute(sa.text("SELECT text FROM echoes")).scalars().all() == ["hi"]
    assert downgrade(engine, "echo@base", tools=with_echo) == HEADS | {"echo": None}
    assert revisions(engine) == sorted(HEADS.values()) and not sa.inspect(engine).has_table("echoes")

def test_init_upgrades_every_installed_tools_branch(url, tmp_path):
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"data", AIPLATFORM_DATABASE__URL=url, HOME=tmp_path)
    out = cli("init", env=env | {"PYTHONPATH": str(PLUGINS)})
    assert out.returncode == 0 and "at codegen codegen_0001, echo echo_0001, jobs jobs_0002, platform platform_0003, resume resume_0001\n" in out.stdout, out.stderr
    out = cli("init", env=env)
    assert out.returncode == 0 and "at codegen codegen_0001, jobs jobs_0002, platform platform_0003, resume resume_0001\n" in out.stdout, out.stderr
    assert revisions(make_engine(url)) == ["codegen_0001", "echo_0001", "jobs_0002", "platform_0003", "resume_0001"]

def _broken_tool(tmp_path, monkeypatch, folder, script):
    (tmp_path/folder).mkdir()
    (tmp_path/folder/"bad_0001.py").write_text(script)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"bad": Tool("bad", "Bad", migrations=folder)}

def test_a_broken_branch_is_refused_in_one_line(tmp_path, monkeypatch):
    bad = _broken_tool(tmp_path, monkeypatch, "bad_ids", "revision = 'x1'\ndown_revision = None\nbranch_labels = ('bad',)\n")
    with pytest.raises(ConfigError, match=r"tool bad: migration .*bad_0001.py: revision = 'x1': expected an id starting with 'bad_'$"):
        schema_heads(bad)
    bad = _broken_tool(tmp_path, monkeypatch, "bad_labels", "revision = 'bad_0001'\ndown_revision = None\n")
    with pytest.raises(ConfigError, match=r"branch_labels = \(\): expected \('bad',\), the tool's branch$"): schema_heads(bad)
    bad = _broken_tool(tmp_path, monkeypatch, "bad_down", "revision = 'bad_0001'\ndown_revision = 'platform_0003'\n")
    with pytest.raises(ConfigError, match=r"down_revision = 'platform_0003': expected a revision of tool bad"):
        schema_heads({"platform": PLATFORM} | bad)
    bad = _broken_tool(tmp_path, monkeypatch, "bad_syntax", "revision = 'bad_0001'\ndown_revision = (\n")
    with pytest.raises(ConfigError, match=r"^migrations of bad: cannot be loaded \(SyntaxError: "): schema_heads(bad)

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

def test_first_use_from_many_threads_at_once(tmp_path):
    "A service checks its first API keys on worker threads at once: one engine, migrated once, for all of them."
    from concurrent.futures import ThreadPoolExecutor
    from aiplatform.platform.store import get_engine
    settings = load_settings(env={}, platform={"data_dir": tmp_path})
    with ThreadPoolExecutor(8) as pool: engines = list(pool.map(lambda _: get_engine(settings), range(8)))
    assert len({id(e) for e in engines}) == 1
