"Databases for the tests: a throw-away PostgreSQL server, and each test's own SQLite or PostgreSQL database."
import glob, os, pwd, shutil, subprocess, tempfile
from pathlib import Path
import pytest
import sqlalchemy as sa
from aiplatform.platform.store import make_engine
from conftest import free_port

def _pg_bin(name):
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)

@pytest.fixture(scope="module")
def postgres():
    "A throw-away PostgreSQL server on a free port (run as the `postgres` user when the tests run as root)."
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb: pytest.skip("PostgreSQL server binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="aip-pg-"))  # not under pytest's folder, which the postgres user cannot enter
    data, port = root/"data", free_port()
    as_user = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", data, "-U", "aip", "--auth=trust"], check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", data, "-l", root/"log", "-w", "-o", f"-p {port} -k {root} -h 127.0.0.1", "start"],
                   check=True, capture_output=True)
    yield f"postgresql+psycopg://aip@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite": return f"sqlite:///{tmp_path/'aip.db'}"
    url = request.getfixturevalue("postgres")
    engine = make_engine(url)
    with engine.begin() as conn:  # each test starts from an empty database
        for t in ("api_keys", "users", "generations", "job_runs", "job_schedules", "resumes", "echoes", "schema_version", "alembic_version"): conn.execute(sa.text(f"DROP TABLE IF EXISTS {t}"))
    engine.dispose()
    return url
