"""Choose the scheduling-core backend (the compiled extension edgepsl._core, or its pure-Python twin) and give
its kernels one Python face: instance arrays in, named results out.

The twin (edgepsl.plan.pure) is used when EDGEPSL_PURE=1 is set or when the extension cannot be
imported; in the second case a RuntimeWarning says why, and `edgepsl doctor` repeats it. Both backends
return plain tuples; `Kernels` wraps them in the named tuples below (which still unpack and index as
tuples), and `kernel_arrays` with `kernel_floor` is the one place that turns an Instance into the arrays the kernels
take (the kernels over an instance take the local-loss release floor as the keyword `floor`, None without one).
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from edgepsl import compiled
from edgepsl.plan import pure

if TYPE_CHECKING:
    from edgepsl.plan.instance import Instance


class KernelArrays(NamedTuple):
    """The five K x H arrays every kernel reads (ms): release r, forward work p, gap g, backward work p', tail q'."""

    r: np.ndarray
    p: np.ndarray
    g: np.ndarray
    pb: np.ndarray
    q: np.ndarray


class JobOrder(NamedTuple):
    """Every helper's job order, flat: jobs offsets[i]:offsets[i + 1] are helper i's, as (client, kind) pairs."""

    seq_client: np.ndarray
    seq_kind: np.ndarray
    offsets: np.ndarray


class JobTimes(NamedTuple):
    """Start and end of every client's forward and backward job, and each client's finish (ms)."""

    fwd_start: np.ndarray
    fwd_end: np.ndarray
    bwd_start: np.ndarray
    bwd_end: np.ndarray
    finish: np.ndarray


class PipeOrder(NamedTuple):
    """Every helper's micro-batch job order, flat (the k-th job (j, kind) of client j is micro-batch k of that
    kind), and each helper's span (ms)."""

    seq_client: np.ndarray
    seq_kind: np.ndarray
    offsets: np.ndarray
    span: np.ndarray


class PipeTimes(NamedTuple):
    """Start and end of every micro-batch job (flat, in plan order) and each client's finish (ms)."""

    start: np.ndarray
    end: np.ndarray
    finish: np.ndarray


class SearchResult(NamedTuple):
    """The local search's assignment and job order, with its counters
    (iterations, reorders, moves, swaps, work, stopped by time)."""

    assignment: np.ndarray
    seq_client: np.ndarray
    seq_kind: np.ndarray
    offsets: np.ndarray
    stats: np.ndarray


class ChainLoad(NamedTuple):
    """The chain and load lower bounds (ms)."""

    chain: float
    load: float


class WindowBound(NamedTuple):
    """The window lower bound (ms) and the window [a, C - b] that gives it."""

    value: float
    a: float
    b: float


class PreemptiveSchedule(NamedTuple):
    """One helper's preemptive largest-tail schedule: completion times, max(C + tail), and its pieces."""

    completion: np.ndarray
    objective: float
    piece_job: np.ndarray
    piece_start: np.ndarray
    piece_end: np.ndarray


def kernel_arrays(instance: Instance) -> KernelArrays:
    """The arrays (r, p, g, p', q') of an instance as the kernels take them (q' = 0 for local-loss clients)."""
    return KernelArrays(instance.r, instance.p, instance.gap, instance.p_bwd, instance.tail)


def kernel_floor(instance: Instance) -> np.ndarray | None:
    """The kernels' `floor` keyword: the backward-release floor w of the local-loss clients, None without any."""
    return instance.release_floor


class Kernels:
    """The active backend's kernels with named results (same arguments as edgepsl.plan.pure)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        for name in ("FWD", "BWD", "RULE_FCFS", "RULE_FWD_FIRST", "RULE_TAIL", "RULES", "PIPE_FCFS", "PIPE_WORK",
                     "PIPE_RULES"):
            setattr(self, name, getattr(module, name))

    def assign_random(self, mem: np.ndarray, cap: np.ndarray, seed: int) -> np.ndarray:
        """Seeded random order, uniform helper with room; -1 for a client that found none."""
        return self.module.assign_random(mem, cap, seed)

    def assign_balanced_greedy(self, mem: np.ndarray, cap: np.ndarray) -> np.ndarray:
        """Index order, helper keeping client counts most even; -1 for a client that found none."""
        return self.module.assign_balanced_greedy(mem, cap)

    def assign_greedy_eft(self, r, p, g, pb, q, mem: np.ndarray, cap: np.ndarray,
                          floor: np.ndarray | None = None) -> np.ndarray:
        """Largest work first to the helper with the earliest estimated finish; -1 for a client that found none."""
        return self.module.assign_greedy_eft(r, p, g, pb, q, mem, cap, floor=floor)

    def assign_greedy_insert(self, r, p, g, pb, q, mem: np.ndarray, cap: np.ndarray, width: int,
                             start: np.ndarray | None = None, priority: np.ndarray | None = None,
                             floor: np.ndarray | None = None) -> np.ndarray:
        """Greedy insertion: each client (largest priority first; None: largest work first) on the best of its
        `width` most promising helpers by dispatched span."""
        return self.module.assign_greedy_insert(r, p, g, pb, q, mem, cap, width, start, priority, floor=floor)

    def dispatch(self, assign: np.ndarray, rule: int, r, p, g, pb, q, floor: np.ndarray | None = None) -> JobOrder:
        """Every helper's job order under one dispatch rule."""
        return JobOrder(*self.module.dispatch(assign, rule, r, p, g, pb, q, floor=floor))

    def evaluate(self, assign: np.ndarray, seq_client: np.ndarray, seq_kind: np.ndarray, offsets: np.ndarray,
                 r, p, g, pb, q, floor: np.ndarray | None = None) -> JobTimes:
        """Run a plan non-preemptively: every job's start and end, every client's finish."""
        return JobTimes(*self.module.evaluate(assign, seq_client, seq_kind, offsets, r, p, g, pb, q, floor=floor))

    def pick_next(self, now: float, kind: np.ndarray, release: np.ndarray, tail: np.ndarray, client: np.ndarray,
                  rule: int) -> int:
        """Online decision: index of the job to run next among those released by `now`, or -1."""
        return self.module.pick_next(now, kind, release, tail, client, rule)

    def new_memo(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        """An empty memo of helper spans that restarts of local_search on K clients share."""
        return self.module.new_memo(K)

    def local_search(self, assign: np.ndarray, r, p, g, pb, q, mem: np.ndarray, cap: np.ndarray, seed: int,
                     budget: int, deadline_ns: int = 0,
                     memo: tuple[np.ndarray, np.ndarray] | None = None,
                     floor: np.ndarray | None = None, relief_swaps: bool = False) -> SearchResult:
        """Improve a feasible assignment and its job orders within a work budget (and a monotonic deadline, 0: none);
        relief_swaps swaps out only the clients whose removal shortens the critical helper's span."""
        return SearchResult(*self.module.local_search(assign, r, p, g, pb, q, mem, cap, seed, budget, deadline_ns,
                                                      memo, floor=floor, relief_swaps=relief_swaps))

    def lower_bound(self, r, p, g, pb, q, mem: np.ndarray, cap: np.ndarray,
                    floor: np.ndarray | None = None) -> ChainLoad:
        """The chain and load bounds."""
        return ChainLoad(*self.module.lower_bound(r, p, g, pb, q, mem, cap, floor=floor))

    def window_bound(self, r, p, g, pb, q, mem: np.ndarray, cap: np.ndarray, wa: np.ndarray,
                     wb: np.ndarray, floor: np.ndarray | None = None) -> WindowBound:
        """The window bound over the grid of window starts wa and tail lengths wb."""
        return WindowBound(*self.module.window_bound(r, p, g, pb, q, mem, cap, wa, wb, floor=floor))

    def joint_bound(self, r, p, g, pb, q, mem: np.ndarray, cap: np.ndarray, room: np.ndarray, ga: np.ndarray,
                    gb: np.ndarray, rounds: int, floor: np.ndarray | None = None) -> float:
        """The joint Lagrangian bound over one window per helper, helper weights and memory multipliers."""
        return self.module.joint_bound(r, p, g, pb, q, mem, cap, room, ga, gb, rounds, floor=floor)

    def jackson_preemptive(self, release: np.ndarray, proc: np.ndarray, tail: np.ndarray, block_start: np.ndarray,
                           block_end: np.ndarray) -> PreemptiveSchedule:
        """Exact preemptive single-helper schedule by the largest-tail rule around blocked intervals."""
        return PreemptiveSchedule(*self.module.jackson_preemptive(release, proc, tail, block_start, block_end))

    def pipe_span(self, clients: np.ndarray, i: int, rule: int, micro: np.ndarray, r: np.ndarray, g: np.ndarray,
                  q: np.ndarray, st: np.ndarray) -> float:
        """Pipelined span of `clients` on helper i with their micro-batch jobs chosen by `rule`."""
        return self.module.pipe_span(clients, i, rule, micro, r, g, q, st)

    def pipe_dispatch(self, assign: np.ndarray, rule: int, micro: np.ndarray, r: np.ndarray, g: np.ndarray,
                      q: np.ndarray, st: np.ndarray) -> PipeOrder:
        """Every helper's micro-batch job order under a rule, and its span."""
        return PipeOrder(*self.module.pipe_dispatch(assign, rule, micro, r, g, q, st))

    def pipe_evaluate(self, assign: np.ndarray, seq_client: np.ndarray, seq_kind: np.ndarray, offsets: np.ndarray,
                      micro: np.ndarray, r: np.ndarray, g: np.ndarray, q: np.ndarray, st: np.ndarray) -> PipeTimes:
        """Run micro-batch job orders: every job's start and end (flat, plan order), every client's finish."""
        return PipeTimes(*self.module.pipe_evaluate(assign, seq_client, seq_kind, offsets, micro, r, g, q, st))


_loaded = compiled.load("edgepsl._core", "scheduling core", "about 100x slower")

kernels = Kernels(_loaded.module or pure)


def backend_name() -> str:
    """'compiled' or 'pure' (and why, when the twin was forced by EDGEPSL_PURE)."""
    return _loaded.name()


def compiled_import_error() -> str | None:
    """The reason the compiled core could not be imported, or None."""
    return _loaded.import_error
