"""The environment of Airflow and the project scripts on a local stack: settings, connections, URLs."""

from __future__ import annotations

import json
import os

from .config import APP_ROLE, HOST, METADATA_DB, REGION, S3_ACCESS_KEY, S3_SECRET_KEY, WAREHOUSE_DB, StackConfig


def conninfo(config: StackConfig, dbname: str, user: str, password: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=HOST, port=config.pg_port, dbname=dbname, user=user, password=password,
                         connect_timeout=10)


def metadata_url(config: StackConfig, secrets: dict[str, str]) -> str:
    """SQLAlchemy URL of Airflow's metadata database."""
    return f"postgresql+psycopg://{APP_ROLE}:{secrets['SPARKIFY_PG_PASSWORD']}@{HOST}:{config.pg_port}/{METADATA_DB}"


def _no_proxy() -> str:
    inherited = os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",")
    return ",".join(dict.fromkeys([p for p in inherited if p] + [HOST, "localhost"]))


def stack_env(config: StackConfig, secrets: dict[str, str]) -> dict[str, str]:
    """Every variable Airflow and the project scripts need for this stack (services add theirs)."""
    password = secrets["SPARKIFY_PG_PASSWORD"]
    api = config.api_url
    root = config.repo_root
    no_proxy = _no_proxy()
    return {
        # Airflow core
        "AIRFLOW_HOME": str(config.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": config.executor,
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__FERNET_KEY": secrets["AIRFLOW__CORE__FERNET_KEY"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(config, secrets),
        # API server
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(config.api_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets["AIRFLOW__API__SECRET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["AIRFLOW__API_AUTH__JWT_SECRET"],
        # New/changed DAG files show up within ~10 s.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        # Connections and variables used by the DAGs
        "AIRFLOW_CONN_SPARKIFY_AWS": json.dumps({
            "conn_type": "aws", "login": S3_ACCESS_KEY, "password": S3_SECRET_KEY,
            "extra": {"endpoint_url": config.s3_endpoint, "region_name": REGION},
        }),
        "AIRFLOW_CONN_SPARKIFY_WAREHOUSE": json.dumps({
            "conn_type": "postgres", "host": HOST, "port": config.pg_port, "login": APP_ROLE,
            "password": password, "schema": WAREHOUSE_DB,
        }),
        "AIRFLOW_VAR_SPARKIFY_BUCKET": config.bucket,
        "AIRFLOW_VAR_SPARKIFY_REGION": REGION,
        # AWS SDK defaults for scripts (boto3 picks these up)
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": config.s3_endpoint,
        # Project scripts and LocalStack.from_environment()
        "SPARKIFY_STATE_DIR": str(config.state_dir),
        "SPARKIFY_PG_PORT": str(config.pg_port),
        "SPARKIFY_S3_PORT": str(config.s3_port),
        "SPARKIFY_API_PORT": str(config.api_port),
        "SPARKIFY_EXECUTOR": config.executor,
        "SPARKIFY_BUCKET": config.bucket,
        "SPARKIFY_S3_ENDPOINT": config.s3_endpoint,
        "SPARKIFY_API_URL": api,
        "SPARKIFY_WAREHOUSE_CONNINFO": conninfo(config, WAREHOUSE_DB, APP_ROLE, password),
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "plugins")]),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


def child_env(env: dict[str, str]) -> dict[str, str]:
    """Environment for processes we spawn: the inherited one without stray Airflow settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base.update(env)
    base["PYTHONUNBUFFERED"] = "1"
    return base
