"""The PostgreSQL server: databases ``sparkify`` (the warehouse) and ``airflow`` (metadata).

It listens on 127.0.0.1 only (no Unix socket) with scram-sha-256 passwords, and logs to
``<state>/logs/postgres.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

from .airflow_env import conninfo
from .config import APP_ROLE, HOST, METADATA_DB, SUPERUSER, WAREHOUSE_DB
from .errors import StackError
from .pg_install import PG_BIN_VAR, PgPlaces, server_account
from .processes import cmdline, pid_alive
from .service import Service

log = logging.getLogger("sparkify.stack")


class Postgres(Service):
    name = "postgres"
    port_var = "SPARKIFY_PG_PORT"
    tokens = ("postgres",)
    stop_signal = signal.SIGINT  # "fast" shutdown: ends open sessions instead of waiting for them

    def __init__(self, config, supervisor, secrets):
        super().__init__(config, supervisor)
        self.secrets = secrets  # callable: the stack's secrets, generated on first use
        self.places = PgPlaces(config)
        self._bins = None

    @property
    def port(self) -> int:
        return self.config.pg_port

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        return conninfo(self.config, dbname, SUPERUSER, self.secrets()["SPARKIFY_PG_SUPERUSER_PASSWORD"])

    def pid(self) -> int | None:
        """The postmaster serving our data dir, per PostgreSQL's own lock file."""
        data = self.places.data
        try:
            pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) and str(data) in cmdline(pid) else None

    def account(self) -> tuple[int, int] | None:
        return server_account()

    def process_env(self) -> dict[str, str]:
        # Not the stack's environment: the server needs none of its secrets.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def prepare(self) -> None:
        self._bins = self.places.prepare()
        data = self.places.data
        if not (data / "PG_VERSION").exists():
            self._initdb()
        self._check_version(data)
        self._write_conf()
        # The lock file names no live postmaster for this data dir (we checked): it is stale.
        (data / "postmaster.pid").unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [str(self._bins / "postgres"), "-D", str(self.places.data)]

    def ready(self) -> bool | None:
        import psycopg

        try:
            with psycopg.connect(self.superuser_conninfo(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return None

    def started(self) -> None:
        self._ensure_databases()

    def stopped(self) -> None:
        self.places.restore()

    def _check_version(self, data) -> None:
        """A cluster runs only on the major version that created it (e.g. one made by PostgreSQL 15)."""
        cluster = (data / "PG_VERSION").read_text().strip()
        version = subprocess.run([str(self._bins / "postgres"), "--version"], capture_output=True, text=True).stdout
        server = version.split()[-1].split(".")[0] if version.strip() else "?"
        if cluster != server:
            raise StackError(
                f"the cluster in {self.places.home} was created by PostgreSQL {cluster}, the server binaries "
                f"({self._bins}) are PostgreSQL {server}: set {PG_BIN_VAR} to a PostgreSQL {cluster} bin dir, "
                f"or remove {self.places.home} (its data is lost) to start afresh"
            )

    def _initdb(self) -> None:
        data = self.places.data
        log.info("initialising PostgreSQL cluster in %s", data)
        data.mkdir(mode=0o700, exist_ok=True)
        account = self.account()
        # initdb, running as the server's account, reads the password from a file: next to the data
        # dir, which that account reaches wherever the data dir is; removed right after.
        pwfile = data.parent / ".initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.secrets()["SPARKIFY_PG_SUPERUSER_PASSWORD"] + "\n")
        user = {}
        if account:
            os.chown(pwfile, *account)
            user = {"user": account[0], "group": account[1], "extra_groups": []}
        try:
            cmd = [
                str(self._bins / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env=self.process_env(),
                                    stdin=subprocess.DEVNULL, **user)
            if result.returncode != 0:
                raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_conf(self) -> None:
        data = self.places.data
        conf = data / "sparkify.conf"
        conf.write_text(
            "# Written by scripts/stack on every start; edit the stack, not this file.\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "password_encryption = 'scram-sha-256'\n"
            "max_connections = 200\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
        )
        main_conf = data / "postgresql.conf"
        include = "include_if_exists = 'sparkify.conf'"
        if include not in main_conf.read_text():
            with open(main_conf, "a") as fh:
                fh.write(f"\n{include}\n")
        account = self.account()
        if account:
            os.chown(conf, *account)
        os.chmod(conf, 0o600)

    def _ensure_databases(self) -> None:
        import psycopg
        from psycopg import sql

        try:
            conn = psycopg.connect(self.superuser_conninfo(), autocommit=True)
        except psycopg.OperationalError as exc:
            raise StackError(
                f"cannot connect to PostgreSQL on {HOST}:{self.port} as {SUPERUSER!r}: {exc}\n"
                f"If {self.config.secrets_file} was lost or replaced, the existing cluster in {self.places.data} "
                "no longer matches it: stop the stack and remove that directory to start afresh."
            ) from exc
        password = self.secrets()["SPARKIFY_PG_PASSWORD"]
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(password)))
            if not exists:
                log.info("created role %s", APP_ROLE)
            for db in (WAREHOUSE_DB, METADATA_DB):
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                    self.create_database(conn, db)
                    log.info("created database %s", db)

    def recreate_databases(self) -> None:
        """Both databases dropped (whoever is connected) and created empty."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            for db in (WAREHOUSE_DB, METADATA_DB):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                self.create_database(conn, db)
                log.info("recreated empty database %s", db)

    @staticmethod
    def create_database(conn, db: str) -> None:
        from psycopg import sql

        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(APP_ROLE)))


def psql_at(conn, query: str) -> list[str]:
    """Run ``query`` (may hold several statements) on ``conn``; the last result as ``psql -At`` prints it."""
    from psycopg import pq

    encoding = conn.info.encoding
    res = conn.pgconn.exec_(query.encode(encoding))
    if res.status == pq.ExecStatus.TUPLES_OK:
        return ["|".join("" if v is None else v.decode(encoding)
                         for v in (res.get_value(row, col) for col in range(res.nfields)))
                for row in range(res.ntuples)]
    if res.status == pq.ExecStatus.COMMAND_OK:
        tag = (res.command_status or b"").decode(encoding)
        return [tag] if tag else []
    if res.status == pq.ExecStatus.EMPTY_QUERY:
        return []
    message = (res.error_message or b"").decode(encoding, errors="replace").strip()
    raise StackError(message or f"query failed ({res.status.name})")
