"""docker-compose.yaml, checked without Docker: structure, mounts, healthchecks, ports, wiring.

The Docker engine is not available to the test suite, so this reads the file with
``yaml.safe_load`` (which resolves the ``<<: *anchor`` merges the way Compose does) and checks
what would break ``docker compose up`` or expose the stack beyond this machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import yaml

from support import REPO

COMPOSE_FILE = REPO / "docker-compose.yaml"

AIRFLOW_SERVICES = (
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer", "airflow-init",
)
SERVICES = ("postgres", "redis", "s3", "s3-seed", *AIRFLOW_SERVICES)
ONE_SHOT = {"airflow-init", "s3-seed"}
AIRFLOW_IMAGE = "apache/airflow:3.3.2"
PROJECT_MOUNTS = {"./dags": "/opt/airflow/dags", "./plugins": "/opt/airflow/plugins",
                  "./include": "/opt/airflow/include", "./scripts": "/opt/airflow/scripts"}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the environment (``$$`` is a literal ``$``)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((interpolate(volume["source"]), volume["target"]))
            continue
        source, target = interpolate(volume).split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def test_yaml_parses_and_lists_every_service(compose, services):
    assert isinstance(compose, dict)
    assert set(SERVICES) <= set(services)


def test_airflow_services_share_the_common_definition(services):
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert interpolate(service["image"]) == AIRFLOW_IMAGE, name
        env = environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert dict(bind_mounts(service)) == PROJECT_MOUNTS, name
    commands = {services[name]["command"] for name in AIRFLOW_SERVICES if name != "airflow-init"}
    assert commands == {"api-server", "scheduler", "dag-processor", "celery worker", "triggerer"}


def test_every_bind_mounted_path_exists(services):
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert (REPO / source).resolve().exists(), f"{name}: {source} does not exist in the repository"


def test_healthchecks(services):
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_ports_bind_to_localhost_only(services):
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert interpolate(str(port)).startswith("127.0.0.1:"), (name, port)
    assert published  # the API server at least


def test_depends_on_conditions(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (mapping form)"
        for other, spec in depends.items():
            assert other in services, (name, other)
            condition = spec["condition"]
            if condition == "service_healthy":
                assert services[other].get("healthcheck"), (name, other)
            elif condition == "service_completed_successfully":
                assert other in ONE_SHOT, (name, other)
            else:
                assert condition == "service_started", (name, other, condition)
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-worker"]["depends_on"]["s3-seed"]["condition"] == "service_completed_successfully"
    assert services["s3-seed"]["depends_on"]["s3"]["condition"] == "service_healthy"


def test_connections_and_variables(services):
    env = environment(services["airflow-worker"])
    aws = json.loads(env["AIRFLOW_CONN_SPARKIFY_AWS"])
    warehouse = json.loads(env["AIRFLOW_CONN_SPARKIFY_WAREHOUSE"])
    assert aws["conn_type"] == "aws"
    assert urlparse(aws["extra"]["endpoint_url"]).hostname in services  # the moto service
    assert warehouse["conn_type"] == "postgres" and warehouse["host"] in services
    seed = environment(services["s3-seed"])
    assert env["AIRFLOW_VAR_SPARKIFY_BUCKET"] == seed["SPARKIFY_BUCKET"]
    assert seed["SPARKIFY_S3_ENDPOINT"] == aws["extra"]["endpoint_url"]

    # The warehouse database and role are the ones docker/postgres-init.sql creates.
    init_scripts = [
        REPO / source for source, target in bind_mounts(services["postgres"])
        if target.startswith("/docker-entrypoint-initdb.d/")
    ]
    assert init_scripts
    sql = "\n".join(path.read_text() for path in init_scripts)
    assert re.search(rf"CREATE ROLE {warehouse['login']} LOGIN PASSWORD '{warehouse['password']}'", sql)
    assert re.search(rf"CREATE DATABASE {warehouse['schema']} OWNER {warehouse['login']}", sql)


def test_connections_select_the_postgres_dialect(services, monkeypatch):
    from sparkify.catalog import AWS_CONN_ID, WAREHOUSE_CONN_ID
    from sparkify.warehouse import Warehouse

    env = environment(services["airflow-worker"])
    # The compose file defines the connections under the ids the DAGs use.
    for name in (f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in (AWS_CONN_ID, WAREHOUSE_CONN_ID)):
        monkeypatch.setenv(name, env[name])
    assert Warehouse(WAREHOUSE_CONN_ID).dialect == "postgres"


def runtime_requirements() -> dict[str, str]:
    """The pins of requirements.txt the DAGs need at run time (name -> version): the distributions
    that dags/ and plugins/ import, and the pinned distributions those depend on, transitively
    (so test-only tools such as moto or pytest are left out)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.split("#", 1)[0].strip():
            requirement = Requirement(line.split("#", 1)[0])
            (version,) = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            pins[canonicalize_name(requirement.name)] = version
    modules = set()
    for path in [*(REPO / "dags").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    distributions = importlib.metadata.packages_distributions()
    needed = {canonicalize_name(dist) for module in modules for dist in distributions.get(module, ())} & pins.keys()
    pending = list(needed)
    while pending:
        for line in importlib.metadata.requires(pending.pop()) or ():
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            if name in pins and name not in needed and (
                requirement.marker is None or requirement.marker.evaluate({"extra": ""})
            ):
                needed.add(name)
                pending.append(name)
    return {name: pins[name] for name in needed}


def test_pip_requirements_cover_the_runtime_pins_of_requirements_txt(services):
    runtime = runtime_requirements()
    # Sanity of the derivation: the providers, and the report operator's matplotlib.
    assert {"apache-airflow", "apache-airflow-providers-amazon", "matplotlib"} <= runtime.keys()
    assert not {"moto", "pytest", "sqlglot", "playwright"} & runtime.keys()

    # Airflow itself is the image; everything else is installed at container start.
    assert interpolate(services["airflow-worker"]["image"]) == f"apache/airflow:{runtime.pop('apache-airflow')}"
    extra = dict(
        requirement.split("==", 1)
        for requirement in environment(services["airflow-worker"])["_PIP_ADDITIONAL_REQUIREMENTS"].split()
    )
    assert extra == runtime
    assert environment(services["airflow-init"])["_PIP_ADDITIONAL_REQUIREMENTS"] == ""


def test_host_ports_differ_from_the_local_stacks(services, monkeypatch):
    """`docker compose up` can run next to `make up` and `make celery-demo` with default ports."""
    from scripts.stack import LocalStack

    for name in ("SPARKIFY_PG_PORT", "SPARKIFY_S3_PORT", "SPARKIFY_API_PORT", "SPARKIFY_REDIS_PORT"):
        monkeypatch.delenv(name, raising=False)
    stack = LocalStack.from_environment()
    taken = {stack.pg_port, stack.s3_port, stack.api_port, stack.redis_port}
    taken |= {int(port) for port in re.findall(r"^CELERY_\w+_PORT \?= (\d+)$", (REPO / "Makefile").read_text(), re.M)}
    assert len(taken) == 8
    published = {
        int(interpolate(str(port)).split(":")[1])
        for service in services.values() for port in service.get("ports", [])
    }
    assert len(published) == 3
    assert not published & taken


def test_seed_runs_the_project_scripts_with_valid_options(services):
    seed = services["s3-seed"]
    assert interpolate(seed["image"]) == AIRFLOW_IMAGE
    script = seed["command"][-1]
    for module in ("scripts.sample_data", "scripts.upload_data"):
        invocation = re.search(rf"python -m {re.escape(module)}((?:\\\n|[^\n])*)", script)
        assert invocation, f"s3-seed does not run {module}"
        flags = set(re.findall(r"(--[a-z][a-z-]*)", invocation.group(1)))
        assert len(flags) >= 3, (module, flags)
        usage = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout
        assert flags and all(flag in usage for flag in flags), (module, flags - set(re.findall(r"--[a-z-]+", usage)))
    assert ("./scripts", "/opt/airflow/scripts") in bind_mounts(seed)
    assert seed["working_dir"] == "/opt/airflow"


def test_production_dockerfile_installs_the_runtime_pins(services):
    """docs/production.md's image for ECS/EKS installs what the compose services install."""
    text = (REPO / "docs" / "production.md").read_text()
    (dockerfile,) = re.findall(r"```dockerfile\n(.*?)```", text, re.S)
    (install,) = re.findall(r"RUN pip install --no-cache-dir ((?:\\\n|[^\n])*)", dockerfile)
    installed = dict(requirement.split("==", 1) for requirement in install.replace("\\\n", " ").split())
    assert installed == {"apache-airflow": AIRFLOW_IMAGE.split(":")[1], **runtime_requirements()}
    assert f"FROM {AIRFLOW_IMAGE}" in dockerfile
    for source, target in PROJECT_MOUNTS.items():
        if source != "./scripts":
            assert re.search(rf"^\s*COPY --chown=airflow:root {source[2:]}/ {target}/$", dockerfile, re.M), source
