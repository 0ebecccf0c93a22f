"The deployment files: docker-compose.yml valid against the Compose specification's JSON schema (compose_spec.json, Apache-2.0, from docker-compose 1.29.2's wheel), its settings the platform's own, its commands installed; the Dockerfile installing as `make run` does. No Docker engine here: nothing is built or run."
import json, re
import jsonschema, yaml
from conftest import BIN, REPO
from aiplatform.core import load_settings

def compose() -> dict: return yaml.safe_load((REPO/"docker-compose.yml").read_text())

def validator():
    "The schema's own draft (2019-09; it names the draft's URL as its time wrote it)."
    return jsonschema.Draft201909Validator(json.loads((REPO/"tests"/"deploy"/"compose_spec.json").read_text()))

def test_the_compose_file_is_valid_against_the_compose_specification():
    validator().validate(compose())

def test_the_schema_catches_a_mistake():
    broken = compose()
    broken["services"]["hub"]["ports"] = "8000:8000"  # a string where a list belongs
    broken["services"]["postgres"]["healthcheck"]["intervall"] = "5s"  # a misspelt key
    errors = {e.absolute_path[-1] if e.validator == "type" else e.message for e in validator().iter_errors(broken)}
    assert "ports" in errors and any(str(e).startswith("'intervall' does not match") for e in errors), errors

def test_it_has_the_database_the_cluster_and_the_hub_wired_together():
    services = compose()["services"]
    assert set(services) == {"postgres", "dask-scheduler", "dask-worker", "hub"}
    hub, worker = services["hub"], services["dask-worker"]
    assert hub["command"] == [".venv/bin/aiplatform", "hub"]
    assert hub["depends_on"]["postgres"]["condition"] == "service_healthy" and worker["deploy"]["replicas"] >= 2
    assert hub["environment"]["AIPLATFORM_JOBS__DASK_ADDRESS"] == "tcp://dask-scheduler:8786" == worker["environment"]["AIPLATFORM_JOBS__DASK_ADDRESS"]
    assert "--port" in services["dask-scheduler"]["command"] and "8786" in services["dask-scheduler"]["command"]
    for service in ("dask-scheduler", "dask-worker", "hub"):  # the programs exist where the image has them
        assert (BIN/services[service]["command"][0].split("/")[-1]).exists(), services[service]["command"]

def test_every_setting_it_gives_is_one_the_platform_reads():
    for name, service in compose()["services"].items():
        env = {k: re.sub(r"\$\{[^}]+\}", "secret", str(v)) for k, v in (service.get("environment") or {}).items() if k.startswith("AIPLATFORM_")}
        settings = load_settings(env=env)  # an unknown section, key or bad value is a ConfigError
        if "AIPLATFORM_HUB__HOST" in env: assert settings.hub.host == "0.0.0.0"
        if "AIPLATFORM_DATABASE__URL" in env: assert settings.database.url.startswith("postgresql+psycopg://aiplatform:")

def test_the_image_installs_as_make_run_does():
    docker, make = (REPO/"Dockerfile").read_text(), (REPO/"Makefile").read_text()
    assert re.search(r"^RUN make install\b", docker, re.M) and re.search(r"^run: install$", make, re.M) and re.search(r"^hub: install$", make, re.M)
    assert re.search(r"^FROM python:3\.11-", docker, re.M)  # the project's Python
    assert 'CMD [".venv/bin/aiplatform", "hub"]' in docker
    assert "nodejs npm" in docker  # the Hub's proxy
