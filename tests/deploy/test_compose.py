"""docker-compose.yml: valid against the Compose specification, and production-shaped (durable
Kafka and PostgreSQL, health checks on /readyz, replicas, secrets only from generated files)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.compose import (
    ROOT,
    InterpolationError,
    interpolate,
    interpolate_string,
    load,
    spec_schema,
    variables,
)

ENVFILE = ROOT / "deploy" / "compose" / "envfile.py"
JOBLINE_SERVICES = {  # compose service -> (module, port variable, port)
    "gateway": ("jobline_gateway", "JOBLINE_GATEWAY_PORT", 8000),
    "outbox-relay": ("jobline_relay", "JOBLINE_RELAY_PORT", 8002),
    "worker": ("jobline_worker", "JOBLINE_WORKER_PORT", 8003),
    "ai-analyzer": ("jobline_analyzer", "JOBLINE_ANALYZER_PORT", 8001),
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|CLUSTER_ID", re.IGNORECASE)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make env-file` writes, in a scratch folder."""
    directory = tmp_path_factory.mktemp("secrets")
    subprocess.run([sys.executable, str(ENVFILE), str(directory)], check=True)
    return directory


# What an operator must set (the workers' handlers have no default); the values are theirs.
HANDLERS = {
    "JOBLINE_HANDLERS_DIR": "../shop-handlers",
    "JOBLINE_WORKER_APP": "shop_jobs.tasks:worker",
    "JOBLINE_QUEUES": "default,billing",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file interpolated with only the required variables set: every default in force."""
    return dict(interpolate(load(), HANDLERS))


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_raw_and_the_interpolated_file_match_the_compose_specification(compose) -> None:
    validator = jsonschema.Draft202012Validator(spec_schema())
    for document in (load(), compose):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []


def test_the_schema_check_is_not_vacuous() -> None:
    validator = jsonschema.Draft202012Validator(spec_schema())
    broken = load()
    broken["services"]["gateway"]["healthcheck"]["tset"] = ["CMD", "true"]
    assert list(validator.iter_errors(broken))
    broken = load()
    broken["services"]["kafka"]["volumes"] = "kafkadata"
    assert list(validator.iter_errors(broken))


def test_interpolation_follows_the_specification() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate_string("${SET}-${UNSET:-d}-${EMPTY:-e}-${EMPTY-f}-$$SET-$SET", env) == (
        "x-d-e--$SET-x"
    )
    assert interpolate_string("${SET:+alt}${UNSET:+alt}", env) == "alt"
    with pytest.raises(InterpolationError, match="UNSET: give it"):
        interpolate_string("${UNSET:?give it}", env)


def test_no_secret_is_written_in_the_file_and_every_env_file_is_generated(
    compose, secrets_dir
) -> None:
    generated = {p.name for p in secrets_dir.glob("*.env")}
    referenced = set()
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            assert not SECRET_NAME.search(key), f"{name}: {key}={value} belongs in an env file"
        for env_file in service.get("env_file", []):
            path = Path(env_file if isinstance(env_file, str) else env_file["path"])
            assert path.parent == Path("deploy/compose/secrets"), (name, path)
            referenced.add(path.name)
    assert referenced == generated
    # Nor may a variable with a default smuggle one in (${X:-hunter2}).
    assert not [v for v in variables() if SECRET_NAME.search(v)]
    ignore = ROOT / "deploy" / "compose" / "secrets" / ".gitignore"
    assert ignore.read_text().splitlines()[1:] == ["*", "!.gitignore"]


def test_generated_secrets_are_random_private_and_consistent(secrets_dir, tmp_path) -> None:
    files = {p.name: read_env_file(p) for p in secrets_dir.glob("*.env")}
    for path in secrets_dir.glob("*.env"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    postgres, jobline = files["postgres.env"], files["jobline.env"]
    password = postgres["POSTGRES_PASSWORD"]
    assert len(password) >= 40
    assert re.fullmatch(r"[A-Za-z0-9_-]+", password)
    url = jobline["JOBLINE_DATABASE_URL"]
    user, db = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    assert url == f"postgresql://{user}:{password}@postgres:5432/{db}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", files["kafka.env"]["CLUSTER_ID"])
    assert len(files["grafana.env"]["GF_SECURITY_ADMIN_PASSWORD"]) >= 40
    # A second run refuses to overwrite (the volumes hold the first values) ...
    again = subprocess.run(
        [sys.executable, str(ENVFILE), str(secrets_dir)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1
    assert "already exist" in again.stderr
    assert read_env_file(secrets_dir / "postgres.env")["POSTGRES_PASSWORD"] == password
    # ... and a fresh one draws new values.
    subprocess.run([sys.executable, str(ENVFILE), str(tmp_path)], check=True)
    assert read_env_file(tmp_path / "postgres.env")["POSTGRES_PASSWORD"] != password


def test_the_settings_accept_the_generated_database_url(secrets_dir) -> None:
    from jobline.settings import DatabaseSettings

    url = read_env_file(secrets_dir / "jobline.env")["JOBLINE_DATABASE_URL"]
    assert DatabaseSettings(database_url=url).plain_url == url


def test_kafka_and_postgres_keep_their_data_in_named_volumes(compose) -> None:
    services, volumes = compose["services"], compose["volumes"]
    kafka = services["kafka"]
    data_dir = environment(kafka)["KAFKA_LOG_DIRS"]
    assert f"kafkadata:{data_dir}" in kafka["volumes"]
    assert environment(kafka)["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert kafka["env_file"] == ["deploy/compose/secrets/kafka.env"]  # a fixed CLUSTER_ID
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"


def test_every_jobline_service_checks_readyz_on_its_own_port(compose) -> None:
    services = compose["services"]
    for name, (module, port_var, port) in JOBLINE_SERVICES.items():
        service = services[name]
        assert service["command"][:3] == ["python", "-m", module]
        test = service["healthcheck"]["test"]
        assert test == ["CMD", "jobline-healthcheck", f"http://127.0.0.1:{port}/readyz"]
        assert service["expose"] == [str(port)]
        settings = importlib.import_module(f"{module}.settings").Settings
        field = port_var.removeprefix("JOBLINE_").lower()
        assert settings.model_fields[field].default == port
        assert environment(service)["JOBLINE_HTTP_HOST"] == "0.0.0.0"
        for dependency in ("init", "postgres", "kafka"):
            assert dependency in service["depends_on"], (name, dependency)
    for name, service in services.items():
        assert "healthcheck" in service or name == "init", f"{name} has no health check"


def test_every_jobline_variable_is_a_setting_of_its_service(compose) -> None:
    for name, (module, _, _) in JOBLINE_SERVICES.items():
        settings = importlib.import_module(f"{module}.settings").Settings
        for key in environment(compose["services"][name]):
            field = key.removeprefix("JOBLINE_").lower()
            assert field in settings.model_fields, f"{name}: {key} is no setting of {module}"


def test_several_replicas_of_gateway_relay_and_worker_behind_one_edge(compose) -> None:
    services = compose["services"]
    for name in ("gateway", "outbox-relay", "worker"):
        assert int(services[name]["deploy"]["replicas"]) >= 2, name
        assert "ports" not in services[name]  # replicas cannot share a host port
    edge = services["edge"]
    assert edge["depends_on"]["gateway"]["condition"] == "service_healthy"
    conf = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    assert "http://gateway:8000" in conf
    assert "resolver 127.0.0.11" in conf


def test_the_worker_runs_your_handlers_not_the_examples(compose) -> None:
    worker = compose["services"]["worker"]
    assert "examples" not in " ".join(worker["command"])
    assert environment(worker)["JOBLINE_WORKER_APP"] == HANDLERS["JOBLINE_WORKER_APP"]
    assert worker["build"]["context"] == HANDLERS["JOBLINE_HANDLERS_DIR"]
    assert worker["build"]["additional_contexts"] == {"jobline": "service:init"}
    # Without them Compose refuses to start and names what is missing: no example handlers
    # (neither jobline_worker.examples nor deploy/examples/handlers) run by default.
    for missing in HANDLERS:
        env = {k: v for k, v in HANDLERS.items() if k != missing}
        with pytest.raises(InterpolationError, match=f"^{missing}: "):
            interpolate(load(), env)
    # The example handlers folder is a working template of what JOBLINE_HANDLERS_DIR names.
    context = ROOT / "deploy" / "examples" / "handlers"
    dockerfile = (context / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{JOBLINE_IMAGE\}$", dockerfile, re.MULTILINE)
    assert "ARG JOBLINE_IMAGE=jobline\n" in dockerfile  # the additional context's name
    # The worker's grace (to finish or hand back jobs) fits in the stop grace period.
    grace = float(environment(worker)["JOBLINE_WORKER_SHUTDOWN_GRACE_SECONDS"])
    assert float(worker["stop_grace_period"].rstrip("s")) > grace


def test_init_migrates_and_creates_the_topics_of_the_worker_queues(compose) -> None:
    init = compose["services"]["init"]
    script = init["command"][-1]
    assert script.startswith("jobline migrate && jobline topics ensure --queues ")
    queues = script.rsplit(" ", 1)[1]
    assert queues == environment(compose["services"]["worker"])["JOBLINE_WORKER_QUEUES"]
    assert init["restart"] == "no"
    for name in ("postgres", "kafka"):
        assert init["depends_on"][name]["condition"] == "service_healthy"


def test_prometheus_and_grafana_are_provisioned_from_deploy(compose) -> None:
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    for job in config["scrape_configs"]:
        (sd,) = job["dns_sd_configs"]
        (target,) = sd["names"]
        assert target in JOBLINE_SERVICES, target
        assert sd["port"] == JOBLINE_SERVICES[target][2]
    assert {t for j in config["scrape_configs"] for t in j["dns_sd_configs"][0]["names"]} == set(
        JOBLINE_SERVICES
    )
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    dashboards = yaml.safe_load((provisioning / "dashboards" / "jobline.yml").read_text())
    dashboards_path = dashboards["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{dashboards_path}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # Admin interfaces listen on the host's loopback only.
    for name in ("prometheus", "grafana"):
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name
