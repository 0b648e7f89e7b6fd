"""The errors every part of the stack raises; their messages say what to look at."""

from __future__ import annotations


class StackError(RuntimeError):
    """A stack operation failed; the message says what to look at."""


class ProcessDiedError(StackError):
    """A process we started exited while we waited for it to come up."""

    def __init__(self, name: str, message: str, bind_failed: bool = False):
        self.name = name
        self.bind_failed = bind_failed
        super().__init__(message)


class PortInUseError(StackError):
    def __init__(self, port: int, env_var: str, host: str = "127.0.0.1"):
        self.port = port
        self.env_var = env_var
        super().__init__(
            f"port {port} ({env_var}) is already in use on {host}; "
            f"stop whatever holds it or set {env_var} to a free port"
        )
