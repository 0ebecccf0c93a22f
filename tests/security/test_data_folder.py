"Nothing a user names reaches the platform's own files: a report's path parameter naming the database, a key, a token or the Hub's folder is refused by the run, which reads none of it."
import pytest
from conftest import cli

@pytest.mark.parametrize("report,params", [("documents", ["-p", "source", "admin.key"]), ("image_folder", ["-p", "folder", "hub"]),
                                           ("tabular_training", ["-p", "table", "aiplatform.db", "-p", "target", "x"])])
def test_a_report_cannot_read_the_platforms_own_files(env, report, params):
    assert cli("init", env=env).returncode == 0
    run = cli("report", "run", report, *params, env=env)
    said = run.stdout + run.stderr
    assert run.returncode != 0 and "the platform's own file; expected one of your data" in said, said[-2000:]
