"""The ``theplaylist`` command as child processes, configured like a test's Settings.

``settings_env(settings)`` turns a :class:`Settings` (from ``make_settings``) into
the ``THEPLAYLIST_*`` variables that make a child process see the same
settings; ``run_cli`` runs one command to completion; ``started`` keeps a
service or worker running for the length of a ``with`` block (waiting for
``/health`` when given a port) and stops it on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_settings import NoDecode

from infrastructure.settings import Settings


def theplaylist_command() -> list[str]:
    """The installed ``theplaylist`` console script of this interpreter's environment."""
    script = shutil.which("theplaylist", path=str(Path(sys.executable).parent))
    if script is not None:
        return [script]
    return [sys.executable, "-c", "from interfaces.cli import main; main()"]


def _env_value(name: str, value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        metadata = Settings.model_fields[name].metadata
        if any(m is NoDecode or isinstance(m, NoDecode) for m in metadata):
            return ",".join(str(item) for item in value)
        return json.dumps(list(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def settings_env(settings: Settings, **extra: object) -> dict[str, str]:
    """A child environment whose ``THEPLAYLIST_*`` variables reproduce ``settings``.

    The parent's own ``THEPLAYLIST_*`` variables are dropped; ``extra`` adds or
    replaces settings by field name (``projection_batch_size=20``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("THEPLAYLIST_")}
    values = {name: getattr(settings, name) for name in settings.model_fields_set}
    values.update(extra)
    for name, value in values.items():
        if value is not None:
            env[f"THEPLAYLIST_{name.upper()}"] = _env_value(name, value)
    return env


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 120,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``theplaylist ARGS`` to completion; stdout and stderr are captured as text.

    ``preexec_fn`` runs in the child before the command (to set a resource limit, say).
    """
    return subprocess.run(
        [*theplaylist_command(), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
        check=False,
    )


@dataclass
class Child:
    """A running ``theplaylist`` process."""

    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str | None

    def log(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> int:
        """SIGKILL: no clean-up code of the child runs. Returns the exit status."""
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def wait_healthy(self, timeout: float = 60) -> None:
        """Return once ``/health`` answers 200; fail with the child's output if it exits."""
        assert self.base_url is not None, "started without a port"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no /health within {timeout} s:\n{self.log()}")
            # The child starts up in another process: polling is all there is.
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=timeout)


@contextmanager
def started(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    port: int | None = None,
    name: str = "child",
    wait: bool = True,
    ready_timeout: float = 60,
) -> Iterator[Child]:
    """Run ``theplaylist ARGS`` during the block; with ``port``, wait for its ``/health``.

    ``wait=False`` returns at once (start several, then call :meth:`Child.wait_healthy`).

    Output goes to ``cwd/<name>.log`` (shown by failing tests through :meth:`Child.log`).
    """
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*theplaylist_command(), *args],
            env=dict(env),
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    child = Child(process, log_path, f"http://127.0.0.1:{port}" if port else None)
    try:
        if port is not None and wait:
            child.wait_healthy(ready_timeout)
        yield child
    finally:
        child.stop()
