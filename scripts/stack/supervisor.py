"""Start, watch and stop the stack's processes (each a ``Service``), with one bind-retry loop."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .config import STATE_MARKER, StackConfig
from .errors import ProcessDiedError, StackError
from .ports import ADDR_IN_USE_MARKERS, ensure_port_free
from .service import Service
from .processes import PidFiles, file_size, group_alive, log_since, pid_alive, signal_tree, tail

log = logging.getLogger("sparkify.stack")

BIND_ATTEMPTS = 3  # retries when another program grabs a port between our check and the bind


class Supervisor:
    """Processes in their own sessions, tracked by pid files in ``<state>/run``, logs in ``<state>/logs``."""

    stop_timeout = 30

    def __init__(self, config: StackConfig, child_env: Callable[[], dict[str, str]]):
        self.config = config
        self.child_env = child_env
        self.pids = PidFiles(config.run_dir, (STATE_MARKER, str(config.state_dir)))
        self._children: dict[str, subprocess.Popen] = {}
        self._log_marks: dict[str, int] = {}  # log size when a process was spawned
        self._lock_depth = 0
        self._lock_fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise mutating operations across processes (two `make up` at once)."""
        if self._lock_depth == 0:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.config.state_dir / ".stack.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def log_path(self, name: str) -> Path:
        return self.config.logs_dir / f"{name}.log"

    def output_since_spawn(self, name: str) -> str:
        return log_since(self.log_path(name), self._log_marks.get(name, 0))

    def owned_pid(self, name: str, tokens: tuple[str, ...] = ()) -> int | None:
        return self.pids.owned(name, tokens or (name,))

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
              account: tuple[int, int] | None = None) -> subprocess.Popen:
        """Run ``cmd`` in a session of its own, output to ``<logs>/<name>.log``, tracked as ``name``."""
        for path in (self.config.run_dir, self.config.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(name)
        self._log_marks[name] = file_size(log_path)
        env = dict(self.child_env() if env is None else env)
        env[STATE_MARKER] = str(self.config.state_dir)
        user = {} if account is None else {"user": account[0], "group": account[1], "extra_groups": []}
        with open(log_path, "ab") as log_fh:
            log_fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(cmd)}\n".encode())
            log_fh.flush()
            proc = subprocess.Popen(
                cmd, cwd=self.config.repo_root if account is None else "/", env=env, stdin=subprocess.DEVNULL,
                stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, **user,
            )
        self._children[name] = proc
        self.pids.write(name, proc.pid, cmd)
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return proc

    def start(self, services: Sequence[Service]) -> None:
        """Start each of ``services`` that is not running, then wait until every one answers.

        Every port is checked before anything starts. This is the one place that retries a bind:
        a port checked free can still be taken before the server binds it.
        """
        with self.locked():
            pending = []
            for service in services:
                pid = service.pid()
                if pid is not None:
                    log.info("%s already running (pid %d) %s", service.name, pid, service.where)
                    service.started()
                elif service.port_var:
                    ensure_port_free(service.port, service.port_var)
                    pending.append(service)
                else:
                    pending.append(service)
            attempts = dict.fromkeys((service.name for service in pending), 1)
            try:
                for service in pending:
                    service.prepare()
                for service in pending:
                    self._launch(service)
                for service in pending:
                    while not self._came_up(service, pending, attempts):
                        pass
                    service.started()
            except BaseException:
                self.stop(pending)  # do not leave a half-started set behind
                raise

    def _launch(self, service: Service) -> None:
        if service.port_var:
            ensure_port_free(service.port, service.port_var)
        self.spawn(service.name, service.command(), service.process_env(), service.account())

    def _came_up(self, service: Service, pending: Sequence[Service], attempts: dict[str, int]) -> bool:
        """Wait for ``service``; False after relaunching a pending one whose port was taken."""
        try:
            self.wait_until(service.ready, f"{service.name} did not answer {service.where}".rstrip(),
                            service.start_timeout, [s.name for s in pending])
            return True
        except ProcessDiedError as exc:
            died = next(s for s in pending if s.name == exc.name)
            if not exc.bind_failed or died.port_var is None or attempts[died.name] >= BIND_ATTEMPTS:
                raise
            attempts[died.name] += 1
            log.info("%s: port %d was taken just before it bound it; retrying", died.name, died.port)
            self._launch(died)
            return False

    def wait_until(self, probe: Callable[[], object | None], what: str, timeout: float, watch: Sequence[str]):
        """Poll ``probe()`` until it returns something other than None, and return that.

        Fails early (with the log tail) if a watched process dies, and after ``timeout`` seconds
        with ``what`` and the log of the first watched process.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None:
                return result
            for name in watch:
                if self.owned_pid(name) is None:
                    output = self.output_since_spawn(name).lower()
                    self.pids.clear(name)
                    raise ProcessDiedError(
                        name,
                        f"{name} exited during startup; see {self.log_path(name)}\n{tail(self.log_path(name))}",
                        bind_failed=any(marker in output for marker in ADDR_IN_USE_MARKERS),
                    )
            if time.monotonic() > deadline:
                log_path = self.log_path(watch[0]) if watch else self.config.logs_dir
                raise StackError(f"{what} within {timeout:.0f}s; see {log_path}\n{tail(log_path)}")
            time.sleep(0.25)

    def stop(self, services: Sequence[Service]) -> None:
        """Stop our live ``services`` together: their stop signal to each main process (which shuts
        its own children down in order), the whole process group after ``stop_timeout``."""
        with self.locked():
            targets: dict[str, tuple[Service, int]] = {}
            for service in services:
                pid = service.pid()
                stale = self.pids.read(service.name)
                if pid is not None:
                    targets[service.name] = (service, pid)
                elif stale is not None and self.pids.orphaned_group(service.name, stale):
                    log.info("%s: main process %d is gone but its process group is not; stopping the leftovers",
                             service.name, stale)
                    targets[service.name] = (service, stale)
                elif stale is not None:
                    log.info("%s: pid file names pid %d, which is not ours (any more); removing the pid file",
                             service.name, stale)
                else:
                    log.info("%s is not running", service.name)
                if service.name not in targets:
                    self.pids.clear(service.name)
            for name, (service, pid) in targets.items():
                log.info("stopping %s (pid %d)", name, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, service.stop_signal)
            left = self._wait_stopped({name: pid for name, (_, pid) in targets.items()})
            for name in targets:
                proc = self._children.pop(name, None)
                if proc is not None:
                    with contextlib.suppress(Exception):
                        proc.wait(timeout=1)
                self.pids.clear(name)
            for service in services:
                if service.name not in left:  # never clean up under a process still running
                    service.stopped()
            if left:
                raise StackError(f"could not stop: {', '.join(left)}")

    def _wait_stopped(self, pending: dict[str, int]) -> list[str]:
        """Wait for the processes and their groups to end; SIGKILL what outlives ``stop_timeout``."""

        def remaining() -> dict[str, int]:
            for name, pid in list(pending.items()):
                if not (pid_alive(pid) or group_alive(pid)):
                    del pending[name]
            return pending

        deadline = time.monotonic() + self.stop_timeout
        while remaining() and time.monotonic() < deadline:
            for pid in pending.values():
                if not pid_alive(pid):  # main process gone, stragglers left in its group
                    signal_tree(pid, signal.SIGTERM)
            time.sleep(0.1)
        for name, pid in remaining().items():
            log.warning("%s (pid %d) did not stop within %ss; sending SIGKILL", name, pid, self.stop_timeout)
            signal_tree(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(remaining())
