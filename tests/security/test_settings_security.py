"Security review (issue 10): a bad settings file, folder, database or value stops the command with one line naming it, never a traceback, a hang or a memory blow-up."
import os, subprocess
import pytest
from conftest import BIN, cli

def one_line_error(r, *words):
    "Assert `r` failed with status 2, printed nothing on stdout and exactly one error line holding every one of `words`."
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aiplatform: error: "), r.stderr
    assert all(str(w) in lines[0] for w in words), r.stderr

def test_non_utf8_settings_file(tmp_path, env):
    ini = tmp_path/"settings.ini"
    ini.write_bytes(b"[server]\nport = 9000\n# caf\xe9\n")
    one_line_error(cli("--settings", ini, "config", env=env), f"settings file {ini}", "not UTF-8", "0xe9")

def test_settings_file_with_a_utf8_bom_is_read(tmp_path, env):
    ini = tmp_path/"settings.ini"
    ini.write_bytes("\ufeff[server]\nport = 9000\n".encode())
    r = cli("--settings", ini, "config", env=env)
    assert r.returncode == 0 and "server.port = 9000" in r.stdout, r.stderr

@pytest.mark.parametrize("command", ["config", "init"])
def test_data_dir_that_is_a_file(tmp_path, env, command):
    afile = tmp_path/"afile"
    afile.write_text("x")
    r = cli(command, env=env | {"AIPLATFORM_PLATFORM__DATA_DIR": afile})
    one_line_error(r, "environment AIPLATFORM_PLATFORM__DATA_DIR [platform] data_dir", str(afile), "expected a folder")

def test_data_dir_that_cannot_be_made(tmp_path, env):
    (tmp_path/"afile").write_text("x")
    r = cli("init", env=env | {"AIPLATFORM_PLATFORM__DATA_DIR": tmp_path/"afile"/"data"})
    one_line_error(r, "[platform] data_dir", str(tmp_path/"afile"/"data"), "expected a folder")

def test_unreachable_database(env):
    r = cli("init", env=env | {"AIPLATFORM_DATABASE__URL": "postgresql+psycopg://u:pw@127.0.0.1:1/x"})
    one_line_error(r, "environment AIPLATFORM_DATABASE__URL [database] url", "postgresql+psycopg://u:****@127.0.0.1:1/x",
                   "cannot open the database", "Connection refused")
    assert ":pw@" not in r.stderr

def run_with_timeout(*args, env):
    "`aiplatform ARGS` that must finish within 30 s, under a 1 GB address-space limit."
    return subprocess.run(["bash", "-c", 'ulimit -v 1000000; exec "$@"', "-", str(BIN/"aiplatform"), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=30)

def test_settings_fifo_is_refused_at_once(tmp_path, env):
    fifo = tmp_path/"settings.ini"
    os.mkfifo(fifo)
    one_line_error(run_with_timeout("--settings", fifo, "config", env=env), f"settings file {fifo}", "not a regular file")
    one_line_error(run_with_timeout("config", env=env | {"AIPLATFORM_SETTINGS": fifo}), f"settings file {fifo}", "not a regular file")

def test_settings_device_is_refused(env):
    one_line_error(run_with_timeout("--settings", "/dev/zero", "config", env=env), "settings file /dev/zero", "not a regular file")

def test_settings_file_over_1_mb_is_refused(tmp_path, env):
    ini = tmp_path/"settings.ini"
    ini.write_text("[server]\n" + "# padding\n" * 110_000)
    one_line_error(run_with_timeout("--settings", ini, "config", env=env), f"settings file {ini}", "larger than 1 MB")

BAD_HOSTS = ["evil host;rm", "evil;rm", "-oProxyCommand", "http://x", "a..b", "x" * 64 + ".org", "fe80::1%evil host;rm",
             "[::1]", "", "1.2.3.999"]

@pytest.mark.parametrize("host", BAD_HOSTS)
def test_server_host_must_be_a_hostname_or_an_ip_address(tmp_path, env, host):
    ini = tmp_path/"settings.ini"
    ini.write_text(f"[server]\nhost = {host}\n")
    one_line_error(cli("--settings", ini, "config", env=env), f"{ini} [server] host = {host!r}", "expected a hostname or an IP address")

@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "gw-1.example.org", "fe80::1%eth0"])
def test_good_server_hosts_are_kept(env, host):
    r = cli("config", env=env | {"AIPLATFORM_SERVER__HOST": host})
    assert r.returncode == 0 and f"server.host = {host} " in r.stdout, r.stderr

def test_short_server_token_is_refused_without_showing_it(env):
    r = cli("config", env=env | {"AIPLATFORM_SERVER__TOKEN": "sekrit"})
    one_line_error(r, "environment AIPLATFORM_SERVER__TOKEN [server] token", "at least 32 characters")
    assert "sekrit" not in r.stderr
    r = cli("config", env=env | {"AIPLATFORM_SERVER__TOKEN": "x" * 32})
    assert r.returncode == 0 and "server.token = ****" in r.stdout
    assert cli("config", env=env | {"AIPLATFORM_SERVER__TOKEN": ""}).returncode == 0  # empty: one is made on first run

@pytest.mark.parametrize("section,key,raw,expected", [
    ("server", "port", "８８８８", "an integer from 1 to 65535"),
    ("server", "port", "8_888", "an integer from 1 to 65535"),
    ("limits", "request_kb", "１０", "an integer from 1 to 1048576"),
    ("services", "health_timeout", "１.５", "a number from 0.1 to 60"),
])
def test_numbers_take_ascii_digits_only(tmp_path, env, section, key, raw, expected):
    ini = tmp_path/"settings.ini"
    ini.write_text(f"[{section}]\n{key} = {raw}\n", encoding="utf-8")
    one_line_error(cli("--settings", ini, "config", env=env), f"{ini} [{section}] {key} = {raw!r}", f"expected {expected}")

def test_database_file_is_private(tmp_path, env):
    r = cli("init", env=env)
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path/"data").glob("aiplatform.db*"))
    assert files and {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o600" for p in files}
    assert cli("users", "add", "ada", env=env).returncode == 0  # writes go through the write-ahead log
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path/"data").glob("aiplatform.db*"))

def test_existing_database_file_is_made_private(tmp_path, env):
    assert cli("init", env=env).returncode == 0
    db = tmp_path/"data"/"aiplatform.db"
    db.chmod(0o644)
    assert cli("users", "list", env=env).returncode == 0
    assert db.stat().st_mode & 0o777 == 0o600
