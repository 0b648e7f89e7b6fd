"""The CLI behind ``make up/down/status/reset/sql/env``: ``python -m scripts.stack COMMAND``."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

from . import __doc__ as package_doc
from .config import HOST, METADATA_DB, WAREHOUSE_DB
from .errors import StackError
from .stack import LocalStack


def print_status(stack: LocalStack, as_json: bool) -> None:
    status = stack.status()
    if as_json:
        print(json.dumps(status, indent=2))
        return
    where = {
        "postgres": f"{HOST}:{stack.pg_port} (databases {WAREHOUSE_DB}, {METADATA_DB})",
        "s3": f"{stack.s3_endpoint} (bucket {stack.bucket}, in memory)",
        "api-server": stack.api_url,
        "scheduler": stack.executor,
        "redis": f"{HOST}:{stack.redis_port} (Celery broker, in memory)",
        "celery-worker": f"concurrency {stack.worker_concurrency}",
    }
    for name in ("postgres", "s3", *stack.components):
        pid = stack.pid(name)
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"{name:<14} {state:<22} {where.get(name, '')}".rstrip())
    print(f"state dir      {stack.state_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=package_doc.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start postgres, s3 and airflow (no-op when up)")
    sub.add_parser("down", help="stop everything this stack started (no-op when down)")
    p_status = sub.add_parser("status", help="show what is running")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("env", help="print `export K=V` lines for eval")
    sub.add_parser("reset", help="empty warehouse and bucket, wipe airflow metadata")
    p_sql = sub.add_parser("sql", help="run SQL on the warehouse, print rows like psql -At")
    p_sql.add_argument("query")
    p_sql.add_argument("--db", default=WAREHOUSE_DB, choices=[WAREHOUSE_DB, METADATA_DB])
    for part in ("postgres", "s3", "airflow"):
        sub.add_parser(f"start-{part}", help=f"start {part} only")
        sub.add_parser(f"stop-{part}", help=f"stop {part} only")
    sub.add_parser("migrate", help="airflow db migrate (when needed)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="stack: %(message)s", stream=sys.stderr)
    try:
        stack = LocalStack.from_environment()
        cmd = args.command
        if cmd == "env":
            for key, value in sorted(stack.env().items()):
                print(f"export {key}={shlex.quote(value)}")
        elif cmd == "status":
            print_status(stack, args.json)
        elif cmd == "sql":
            for line in stack.query(args.query, args.db):
                print(line)
        elif cmd == "migrate":
            stack.start_postgres()
            stack.migrate_airflow()
        else:
            getattr(stack, cmd.replace("-", "_"))()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
