"""The Celery broker of a CeleryExecutor stack: ``redis-server`` on 127.0.0.1, in memory only
(no RDB/AOF files), password in a 0600 config file rather than on the command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config import HOST
from .errors import StackError
from .service import Service


class Redis(Service):
    name = "redis"
    port_var = "SPARKIFY_REDIS_PORT"
    tokens = ("redis-server",)
    start_timeout = 30

    def __init__(self, config, supervisor, secrets):
        super().__init__(config, supervisor)
        self.secrets = secrets  # callable: the stack's secrets, generated on first use

    @property
    def port(self) -> int:
        return self.config.redis_port

    @property
    def password(self) -> str:
        return self.secrets()["SPARKIFY_REDIS_PASSWORD"]

    def environment(self) -> dict[str, str]:
        return {
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{self.password}@{HOST}:{self.port}/0",
            "SPARKIFY_REDIS_PORT": str(self.port),
        }

    @staticmethod
    def server() -> str:
        found = shutil.which("redis-server")
        if not found:
            raise StackError(
                "redis-server not found; the CeleryExecutor stack needs it (Debian: apt-get install redis-server)"
            )
        return found

    def prepare(self) -> None:
        self.server()
        self.config.redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.conf_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# Written by scripts/stack on every start; edit the stack, not this file.\n")
            fh.write(f"requirepass {self.password}\n")
        os.chmod(self.conf_file, 0o600)

    @property
    def conf_file(self) -> Path:
        return self.config.redis_dir / "redis.conf"

    def command(self) -> list[str]:
        return [
            self.server(), str(self.conf_file), "--bind", HOST, "--port", str(self.port), "--protected-mode", "yes",
            "--save", "", "--appendonly", "no", "--dir", str(self.config.redis_dir), "--daemonize", "no",
            "--logfile", "",
        ]

    def ready(self) -> bool | None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host=HOST, port=self.port, password=self.password,
            socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0),  # we poll ourselves
        )
        try:
            return True if client.ping() else None
        except redis.RedisError:
            return None
        finally:
            client.close()
