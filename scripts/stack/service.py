"""What every server of the stack looks like to the supervisor: the same running/start/stop."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from .config import StackConfig

if TYPE_CHECKING:
    from .supervisor import Supervisor


class Service:
    """One server of the stack. Subclasses say how to run it and how to tell it is up; the
    supervisor does the rest, the same way for every service."""

    name = ""
    port_var: str | None = None  # the variable that sets its port, for messages
    tokens: tuple[str, ...] = ()  # one of these is in its command line (tells ours from lookalikes)
    start_timeout = 60.0
    stop_signal = signal.SIGTERM

    def __init__(self, config: StackConfig, supervisor: Supervisor):
        self.config = config
        self.supervisor = supervisor

    @property
    def port(self) -> int | None:
        return None

    @property
    def where(self) -> str:
        return f"on 127.0.0.1:{self.port}" if self.port else ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the first spawn: files, configuration, checks."""

    def ready(self) -> object | None:
        """Polled after the spawn until it returns something other than None."""
        return True

    def started(self) -> None:
        """Once it answers, and when it was running already (e.g. make sure the bucket exists)."""

    def stopped(self) -> None:
        """After it stopped, and when it was not running (clean up what ``prepare`` made)."""

    def environment(self) -> dict[str, str]:
        """Settings this service adds to the stack's environment (e.g. the broker URL)."""
        return {}

    def process_env(self) -> dict[str, str] | None:
        """The process's environment; None: the stack's full environment."""
        return None

    def account(self) -> tuple[int, int] | None:
        """(uid, gid) to run as; None: as ourselves."""
        return None

    def pid(self) -> int | None:
        return self.supervisor.owned_pid(self.name, self.tokens)

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        self.supervisor.start([self])

    def stop(self) -> None:
        self.supervisor.stop([self])
