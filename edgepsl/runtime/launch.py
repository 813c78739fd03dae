"""Start a whole run on one machine: throwaway CURVE keys in the run directory, roles as separate processes.

Faults (`LocalRun.faults`, `edgepsl demo --faults`) are applied to the processes this launcher started, by PID, as
soon as the round before theirs has ended: kill (SIGKILL), stop (SIGSTOP, SIGCONT after the fault's seconds), join
(a new client process, with its own key and data share, or a new helper process, with its own key, which registers
and joins at the next aggregation boundary); each applied fault is logged to RUN_DIR/faults.json (what, when in
wall-clock ms, which PID).

Each client reads only its own data: client j gets `--data` client_data[j], or (by default) its share of Fashion-MNIST
written to RUN_DIR/data/client{j}.npz as the demo partitions it. Roles get the run's artifact as their local copy.
A client emulating a profiled device states that device's memory for part-2 (`--memory-mb`, client_memory_args).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edgepsl.data.shares import write_fashion_mnist_shares
from edgepsl.data.spec import FASHION_MNIST, DataSpec
from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import DEFAULT_CUTS
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import Coordinator, RunSummary
from edgepsl.runtime.emulation import Emulation
from edgepsl.runtime.errors import RunAbortedError, RunConfigError
from edgepsl.runtime.faults import Fault, FaultSpecError, check_faults
from edgepsl.wire import KeyStore, ServerSecurity

log = logging.getLogger("edgepsl.runtime.launch")
COORDINATOR = "coordinator"
CHILD_EXIT_S = 30.0


@dataclass(frozen=True)
class LocalRun:
    """A run of config.helpers helpers and config.clients clients on 127.0.0.1, each role a process; client_data: one
    data spec per client (normalised by the run's mean, std, divide), default its Fashion-MNIST share;
    client_memory_mb: one memory for part-2 per client (MB, None: none stated), default client_memory_args's."""

    config: RunConfig
    run_dir: Path
    secure: bool = True
    client_emulation: Sequence[Emulation] = ()
    helper_emulation: Sequence[Emulation] = ()
    resume: bool = False
    stop_after: int | None = None
    log_level: str = "info"
    client_data: Sequence[str] = ()
    client_memory_mb: Sequence[float | None] = ()
    faults: Sequence[Fault] = ()


def role_names(config: RunConfig) -> tuple[list[str], list[str]]:
    """Names of the helpers and clients of a local run."""
    return [f"helper{i}" for i in range(config.helpers)], [f"client{j}" for j in range(config.clients)]


def joining(run: LocalRun, role: str = "") -> list[str]:
    """The roles (of `role`, "client" or "helper", when given) a run's faults start during the run (join:NAME@ROUND)."""
    return [f.role for f in run.faults if f.action == "join" and f.role.startswith(role)]


def _keys(run: LocalRun) -> KeyStore | None:
    """A key store in the run directory with a key pair per role, joining clients included (reused on resume)."""
    if not run.secure:
        return None
    store = KeyStore(run.run_dir / "keys")
    helpers, clients = role_names(run.config)
    for name in [COORDINATOR, *helpers, *clients, *joining(run)]:
        if name not in store.identities():
            store.new(name)
    return store


def _emulation_args(emulation: Emulation) -> list[str]:
    args = []
    if emulation.device is not None:
        args += ["--device", emulation.device]
    if emulation.slowdown is not None:
        args += ["--slowdown", repr(emulation.slowdown)]
    if emulation.bandwidth_mbps is not None:
        args += ["--bandwidth", repr(emulation.bandwidth_mbps)]
    return args


def client_data_args(run: LocalRun) -> list[list[str]]:
    """Each client's data options (the clients that join during the run last): --data run.client_data[j] (the run's
    normalisation), else its Fashion-MNIST share written into RUN_DIR/data with the Fashion-MNIST normalisation."""
    config = run.config
    if run.client_data:
        wanted = config.clients + len(joining(run, "client"))
        if len(run.client_data) != wanted:
            raise RunConfigError(f"{len(run.client_data)} client data specs for {wanted} clients (the run's "
                                 f"{config.clients} and the {len(joining(run, 'client'))} that join during it)")
        return [["--data", str(DataSpec.parse(spec))] for spec in run.client_data]
    paths = write_fashion_mnist_shares(run.run_dir / "data", config.clients + len(joining(run, "client")),
                                       config.partition,
                                       config.seed,
                                       config.alpha, config.train_samples, min_size=config.batch_size,
                                       data_dir=config.data_dir)
    norm = FASHION_MNIST
    return [["--data", f"npz:{path}", "--mean", ",".join(map(repr, norm.mean)), "--std",
             ",".join(map(repr, norm.std)), "--divide", repr(norm.divide)] for path in paths]


def client_memory_args(run: LocalRun) -> list[list[str]]:
    """Each client's --memory-mb: run.client_memory_mb[j] where given; else, for a client emulating a device of the
    run's emulation_profile, the memory that device gave to part-2 when it was profiled (the profile model's part-2
    at its usual cuts, profiles.part2_memory_mb); else none (such a client is never planned local)."""
    config = run.config
    if run.client_memory_mb:
        if len(run.client_memory_mb) != config.clients:
            raise RunConfigError(f"{len(run.client_memory_mb)} client memories for {config.clients} clients")
        memory = list(run.client_memory_mb)
    else:
        emulated = [e.device for e in run.client_emulation[:config.clients]]
        memory = [None] * config.clients
        if any(device is not None for device in emulated):
            prof = load_profile(config.emulation_profile)
            profiled = prof.part2_memory_mb(*DEFAULT_CUTS.get(prof.model, (1, prof.layers - 1)))
            memory[:len(emulated)] = [None if device is None else profiled for device in emulated]
    memory += [None] * len(joining(run, "client"))  # a client that joins during the run states no memory
    return [[] if mb is None else ["--memory-mb", repr(float(mb))] for mb in memory]


def _commands(run: LocalRun, endpoint: str, store: KeyStore | None) -> dict[str, list[str]]:
    """The command of every role, by name: the helpers, the clients, then those that join during the run (a joining
    helper after the helpers, a joining client after the clients)."""
    helpers, clients = role_names(run.config)
    data_args = client_data_args(run)
    memory_args = client_memory_args(run)
    commands = {}
    for role, names, emulations in (("helper", [*helpers, *joining(run, "helper")], run.helper_emulation),
                                    ("client", [*clients, *joining(run, "client")], run.client_emulation)):
        for k, name in enumerate(names):
            cmd = [sys.executable, "-m", "edgepsl", role, "--coordinator", endpoint, "--name", name,
                   "--trace", str(run.run_dir / "traces" / f"{name}.jsonl"), "--log-level", run.log_level,
                   "--artifact", run.config.artifact]
            if role == "client":
                cmd += data_args[k] + memory_args[k]
            if store is None:
                cmd.append("--insecure")
            else:
                server_key = store.identity(COORDINATOR).public.decode()
                cmd += ["--keys", str(store.root), "--key", name, f"--server-key={server_key}"]
            if k < len(emulations):
                cmd += _emulation_args(emulations[k])
            commands[name] = cmd
    return commands


class FaultInjector:
    """Applies a run's faults to its role processes by PID when the round before theirs has ended."""

    def __init__(self, faults: Sequence[Fault], procs: Sequence[tuple[str, subprocess.Popen]], log_path: Path,
                 start: Callable[[str], subprocess.Popen]) -> None:
        self.log_path = log_path
        self.start = start
        self.pending = sorted(faults, key=lambda f: f.round)
        self.procs = procs
        self.faulted: set[str] = set()  # roles whose exit (or stop) is the fault's doing
        self.applied: list[dict[str, Any]] = []
        self.timers: list[threading.Timer] = []

    def after_round(self, round_: int) -> None:
        """Apply every fault of round round_ + 1."""
        while self.pending and self.pending[0].round <= round_ + 1:
            self._apply(self.pending.pop(0))

    def _apply(self, fault: Fault) -> None:
        if fault.action == "join":
            proc = self.start(fault.role)
            self._log(fault, proc)
            return
        procs = dict(self.procs)
        if fault.role not in procs:
            raise FaultSpecError(f"fault {fault}: no process of {fault.role} was started")
        proc = procs[fault.role]
        self.faulted.add(fault.role)
        self._log(fault, proc)
        if fault.action == "kill":
            proc.send_signal(signal.SIGKILL)
        elif fault.action == "stop":
            proc.send_signal(signal.SIGSTOP)
            timer = threading.Timer(fault.seconds, self._resume, (proc,))
            timer.daemon = True
            timer.start()
            self.timers.append(timer)

    def _log(self, fault: Fault, proc: subprocess.Popen) -> None:
        self.applied.append({"fault": str(fault), "round": fault.round, "at_ms": time.time() * 1e3, "pid": proc.pid})
        self.log_path.write_text(json.dumps(self.applied, indent=1) + "\n")
        log.warning("fault %s: pid %d", fault, proc.pid)

    @staticmethod
    def _resume(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Resume every process still stopped (so it can leave on the bye)."""
        for timer in self.timers:
            timer.cancel()
        for name, proc in self.procs:
            if name in self.faulted:
                self._resume(proc)


def run_local(run: LocalRun, on_round: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
    """Bind the coordinator, start every helper and client process, drive the run (injecting its faults), and reap
    the processes."""
    run = dataclasses.replace(run, run_dir=run.run_dir.resolve())
    check_faults(list(run.faults), *role_names(run.config), run.config.rounds)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    store = _keys(run)
    security = None
    if store is not None:
        # Public keys straight from the key pairs: KeyStore.allowed() would read a 40-character path as a Z85 key.
        allowed = {name: key for name, key in store.identities().items() if name != COORDINATOR}
        security = ServerSecurity(store.identity(COORDINATOR), allowed)
    procs: list[tuple[str, subprocess.Popen]] = []
    logs = run.run_dir / "logs"
    commands: dict[str, list[str]] = {}

    def start(name: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "ab") as log_file:
            proc = subprocess.Popen(commands[name], stdout=log_file, stderr=subprocess.STDOUT)
        procs.append((name, proc))
        return proc

    faults = FaultInjector(run.faults, procs, run.run_dir / "faults.json", start)

    def watch() -> None:
        dead = [f"{name} (exit {proc.returncode})" for name, proc in procs
                if name not in faults.faulted and proc.poll() not in (None, 0)]
        if dead:
            raise RunAbortedError(f"role processes died: {', '.join(dead)}; see their logs in {logs}")

    def round_done(metrics: dict[str, Any]) -> None:
        if on_round is not None:
            on_round(metrics)
        faults.after_round(int(metrics["round"]))

    coordinator = Coordinator(run.config, run.run_dir, security=security, resume=run.resume, stop_after=run.stop_after,
                              on_round=round_done, watch=watch)
    logs.mkdir(exist_ok=True)
    try:
        commands.update(_commands(run, coordinator.endpoint, store))
        for name in commands:
            if name not in joining(run):
                start(name)
        summary = coordinator.run()
        faults.close()
        failed = [f"{name} (exit {code})" for name, code in _reap(procs) if code != 0 and name not in faults.faulted]
        if failed:
            raise RunAbortedError(f"role processes failed: {', '.join(failed)}; see {logs}")
        return summary
    finally:
        faults.close()
        _reap(procs)


def _reap(procs: Sequence[tuple[str, subprocess.Popen]]) -> list[tuple[str, int]]:
    """Wait (CHILD_EXIT_S in all) for the role processes, which leave on the coordinator's bye; kill what remains."""
    deadline = time.monotonic() + CHILD_EXIT_S
    codes = []
    for name, proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        codes.append((name, proc.returncode))
    return codes
