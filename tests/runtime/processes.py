"""A secure run of the standalone commands (edgepsl coordinator / helper / client), each role a process of its own."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgepsl.runtime.config import RunConfig
from edgepsl.wire import KeyStore

EDGEPSL = [sys.executable, "-m", "edgepsl"]
EXIT_S = 10.0


def free_endpoint() -> str:
    """A TCP endpoint on 127.0.0.1 no one listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


class CommandRun:
    """Keys, a config file and the commands of a coordinator, one helper and some clients; processes killed by PID."""

    def __init__(self, root: Path, config: RunConfig, endpoint: str | None = None) -> None:
        self.root = root
        self.store = KeyStore(root / "keys")
        self.store.new("coordinator")
        self.helpers = [f"helper{i}" for i in range(config.helpers)]
        self.clients = [f"client{j}" for j in range(config.clients)]
        for name in [*self.helpers, *self.clients]:
            self.store.allow(name, self.store.new(name).public)
        self.config_path = root / "run.toml"
        config.save(self.config_path)
        self.run_dir = root / "run"
        self.endpoint = endpoint or free_endpoint()
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen([*EDGEPSL, *args], stdout=log, stderr=subprocess.STDOUT,
                                env=None if env is None else {**os.environ, **env})
        log.close()
        self.procs[name] = proc
        return proc

    def coordinator(self, *extra: str, name: str = "coordinator") -> subprocess.Popen:
        """Start the coordinator on the run's endpoint."""
        return self._start(name, ["coordinator", "--config", str(self.config_path), "--run-dir", str(self.run_dir),
                                  "--bind", self.endpoint, "--keys", str(self.store.root), "--key", "coordinator",
                                  *extra])

    def role(self, name: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start helper or client `name` against the run's endpoint (with `env` added to this process's)."""
        role = "helper" if name.startswith("helper") else "client"
        return self._start(name, [role, "--coordinator", self.endpoint, "--name", name, "--keys", str(self.store.root),
                                  "--key", name, "--server-key", str(self.store.root / "coordinator.key"), *extra],
                           env)

    def roles(self) -> None:
        """Start every helper and client."""
        for name in [*self.helpers, *self.clients]:
            self.role(name)

    def log(self, name: str) -> str:
        """What a process wrote so far."""
        return (self.root / f"{name}.log").read_text(errors="replace")

    def wait_round(self, round_: int, timeout_s: float = 120.0) -> None:
        """Wait until metrics.jsonl holds round `round_` (bounded)."""
        path = self.run_dir / "metrics.jsonl"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.is_file() and sum(1 for _ in path.read_text().splitlines()) > round_:
                return
            time.sleep(0.02)
        raise AssertionError(f"round {round_} not reached within {timeout_s} s:\n{self.log('coordinator')}")

    def wait_all(self, timeout_s: float) -> dict[str, int]:
        """Every process's exit status, waiting at most timeout_s in all (AssertionError naming those still running)."""
        deadline = time.monotonic() + timeout_s
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
        running = sorted(set(self.procs) - set(codes))
        assert not running, f"still running after {timeout_s} s: {running}\n" + "\n".join(
            f"== {n}\n{self.log(n)[-2000:]}" for n in running)
        return codes

    def kill_all(self) -> None:
        """Kill (by PID) whatever is still running."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
