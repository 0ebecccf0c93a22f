"Settings: precedence, sources, masking, and every kind of bad setting stopping the command with a clear error."
import pytest
from aiplatform.core import load_settings
from conftest import cli

def test_precedence_defaults_file_env_arguments(tmp_path):
    ini = tmp_path/"settings.ini"
    ini.write_text("[server]\nport = 9000\nhost = 0.0.0.0\n[limits]\nrequest_kb = 10\n")
    env = {"AIPLATFORM_SERVER__PORT": "9100", "AIPLATFORM_LIMITS__REQUEST_KB": "20"}
    s = load_settings(ini, env=env, limits={"request_kb": 30})
    assert (s.server.host, s.source("server", "host")) == ("0.0.0.0", str(ini))
    assert (s.server.port, s.source("server", "port")) == (9100, "environment AIPLATFORM_SERVER__PORT")
    assert (s.limits.request_kb, s.source("limits", "request_kb")) == (30, "argument")
    assert (s.server.auth, s.source("server", "auth")) == ("token", "default")

def test_file_found_through_environment_and_relative_paths(tmp_path, monkeypatch):
    (tmp_path/"settings.ini").write_text("[platform]\ndata_dir = here\n")
    monkeypatch.chdir(tmp_path.parent)
    s = load_settings(env={"AIPLATFORM_SETTINGS": str(tmp_path/"settings.ini")})
    assert s.data_dir == tmp_path/"here" and s.database_url == f"sqlite:///{tmp_path/'here'/'aiplatform.db'}"

BAD = [  # settings file text, the words the error must hold
    ("[sever]\nport = 1\n", ["unknown section [sever]", "expected one of platform, database"]),
    ("[server]\nprot = 1\n", ["[server] prot: unknown key", "expected one of host, port"]),
    ("[server]\nport = abc\n", ["[server] port = 'abc'", "expected an integer from 1 to 65535"]),
    ("[server]\nport = 70000\n", ["[server] port = '70000'", "expected an integer from 1 to 65535"]),
    ("[server]\nport = 0\n", ["[server] port = '0'", "expected an integer from 1 to 65535"]),
    ("[server]\nauth = magic\n", ["[server] auth = 'magic'", "expected one of token, password"]),
    ("[database]\necho = maybe\n", ["[database] echo = 'maybe'", "expected true or false"]),
    ("[services]\nhealth_timeout = -1\n", ["[services] health_timeout = '-1'", "expected a number from 0.1 to 60"]),
    ("port = 1\n", ["not an INI file"]),
]

@pytest.mark.parametrize("text,words", BAD, ids=[w[0] for _, w in BAD])
def test_bad_setting_stops_start_up(tmp_path, env, text, words):
    ini = tmp_path/"settings.ini"
    ini.write_text(text)
    r = cli("--settings", ini, "config", env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert str(ini) in r.stderr and all(w in r.stderr for w in words), r.stderr

def test_unreadable_file(tmp_path, env):
    for path in (tmp_path/"missing.ini", tmp_path):  # a missing file, and a folder
        r = cli("--settings", path, "config", env=env)
        assert r.returncode == 2 and f"settings file {path}: cannot be read" in r.stderr

def test_bad_environment_value_names_the_variable(env):
    r = cli("config", env=env | {"AIPLATFORM_SERVER__PORT": "99999"})
    assert r.returncode == 2
    assert "environment AIPLATFORM_SERVER__PORT [server] port = '99999': expected an integer from 1 to 65535" in r.stderr
    r = cli("config", env=env | {"AIPLATFORM_NOPE__X": "1"})
    assert r.returncode == 2 and "unknown section [nope]" in r.stderr

def test_serve_refuses_password_auth_without_a_password(tmp_path, env):
    r = cli("serve", env=env | {"AIPLATFORM_SERVER__AUTH": "password"})
    assert r.returncode == 2 and "[server] password = ''" in r.stderr

def test_config_prints_values_sources_and_masks_secrets(tmp_path, env):
    ini = tmp_path/"settings.ini"
    ini.write_text("[server]\ntoken = s3cr3t-token-of-at-least-32-characters\n[database]\nurl = postgresql+psycopg://ops:pa55@db.example/aip\n")
    r = cli("--settings", ini, "config", env=env | {"AIPLATFORM_SERVER__PORT": "8899"})
    assert r.returncode == 0, r.stderr
    lines = {l.split(" = ")[0]: l for l in r.stdout.splitlines() if " = " in l}
    assert "s3cr3t" not in r.stdout and "pa55" not in r.stdout
    assert "****" in lines["server.token"] and "postgresql+psycopg://ops:****@db.example/aip" in lines["database.url"]
    assert lines["server.port"].startswith("server.port = 8899") and "# environment AIPLATFORM_SERVER__PORT" in lines["server.port"]
    assert "# default" in lines["server.host"] and f"# {ini}" in lines["server.token"]
