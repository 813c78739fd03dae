# cython: language_level=3
"""Compiled scheduling core of edgepsl: the twin of edgepsl.plan.pure, function for function.

Plain functions over C-contiguous float64 / int64 arrays; the loops run without the GIL. The kernels over an
instance take an optional K x H `floor` (w) of the backward releases (local-loss clients; None: no floor). Each
kernel lives in its own include file; this module holds the Python-facing wrappers.
"""
import numpy as np

include "constants.pxi"
include "rng.pxi"
include "heap.pxi"
include "instance.pxi"
include "assign.pxi"
include "dispatch.pxi"
include "evaluate.pxi"
include "bounds.pxi"
include "search.pxi"
include "insert.pxi"
include "jackson.pxi"
include "pipeline.pxi"

FWD = C_FWD
BWD = C_BWD
RULE_FCFS = C_RULE_FCFS
RULE_FWD_FIRST = C_RULE_FWD_FIRST
RULE_TAIL = C_RULE_TAIL
RULES = (RULE_FCFS, RULE_FWD_FIRST, RULE_TAIL)
PIPE_FCFS = C_PIPE_FCFS
PIPE_WORK = C_PIPE_WORK
PIPE_RULES = (PIPE_FCFS, PIPE_WORK)

_MASK = (1 << 64) - 1


cdef int _check_assign(const long[::1] assign, long K, long H) except -1:
    cdef long j
    if assign.shape[0] != K:
        raise ValueError(f"assignment has {assign.shape[0]} entries, expected {K}")
    for j in range(K):
        if assign[j] < 0 or assign[j] >= H:
            raise ValueError(f"client {j} is assigned to helper {assign[j]}, not in [0, {H})")
    return 0


cdef inline int _check_rule(int rule) except -1:
    if rule < C_RULE_FCFS or rule > C_RULE_TAIL:
        raise ValueError(f"unknown dispatch rule {rule}; expected one of {RULES}")
    return 0


def assign_random(const double[::1] mem, const double[::1] cap, seed):
    """Visit clients in a seeded random order; put each on a uniformly drawn helper with room for it."""
    cdef long K = mem.shape[0]
    cdef long H = cap.shape[0]
    out = np.empty(K, dtype=np.int64)
    cdef long[::1] o = out
    cdef uint64_t s = <uint64_t>(seed & _MASK)
    cdef long[::1] order = np.empty(max(K, 1), dtype=np.int64)
    cdef long[::1] feasible = np.empty(max(H, 1), dtype=np.int64)
    cdef double[::1] used = np.empty(max(H, 1), dtype=np.float64)
    with nogil:
        c_assign_random(&mem[0], &cap[0], K, H, s, &o[0], &order[0], &feasible[0], &used[0])
    return out


def assign_balanced_greedy(const double[::1] mem, const double[::1] cap):
    """Clients in index order; each goes where the spread (max - min) of client counts stays smallest."""
    cdef long K = mem.shape[0]
    cdef long H = cap.shape[0]
    if K < 1 or H < 1:
        raise ValueError("the kernels need at least one client and one helper")
    out = np.empty(K, dtype=np.int64)
    cdef long[::1] o = out
    cdef long* count = <long*>malloc(H * sizeof(long))
    cdef double* used = <double*>malloc(H * sizeof(double))
    if not count or not used:
        free(count); free(used)
        raise MemoryError()
    with nogil:
        c_assign_balanced_greedy(&mem[0], &cap[0], K, H, &o[0], count, used)
    free(count); free(used)
    return out


def assign_greedy_eft(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                      const double[:, ::1] pb, const double[:, ::1] q, const double[::1] mem,
                      const double[::1] cap, floor=None):
    """Largest work first; each client goes to the helper with the earliest estimated finish."""
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    out = np.empty(s.K, dtype=np.int64)
    cdef long[::1] o = out
    cdef Heap h
    cdef double[:, ::1] buf = np.empty((5, s.H), dtype=np.float64)
    cdef long[::1] count = np.empty(s.H, dtype=np.int64)
    h.data = <Entry*>malloc(s.K * sizeof(Entry))
    if not h.data:
        raise MemoryError()
    with nogil:
        c_assign_greedy_eft(&s, &mem[0], &cap[0], &o[0], &h, &buf[0, 0], &buf[1, 0], &buf[2, 0], &buf[3, 0],
                            &buf[4, 0], &count[0])
    free(h.data)
    return out


def assign_greedy_insert(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                         const double[:, ::1] pb, const double[:, ::1] q, const double[::1] mem,
                         const double[::1] cap, long width, start=None, priority=None, floor=None):
    """Largest work first; each client onto the best of its `width` most promising helpers by dispatched span.

    start, if given, fixes the clients with start[j] >= 0 on that helper; only the others are inserted.
    priority, if given, orders the insertion instead: largest priority[j] first (ties by index).
    """
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    if start is None:
        start = np.full(s.K, -1, dtype=np.int64)
    cdef const long[::1] fixed = start
    cdef long j
    if fixed.shape[0] != s.K:
        raise ValueError(f"start has {fixed.shape[0]} entries, expected {s.K}")
    for j in range(s.K):
        if fixed[j] >= s.H:
            raise ValueError(f"client {j} starts on helper {fixed[j]}, not in [0, {s.H})")
    cdef const double[::1] prio
    cdef const double* prio_ptr = NULL
    if priority is not None:
        prio = priority
        if prio.shape[0] != s.K:
            raise ValueError(f"priority has {prio.shape[0]} entries, expected {s.K}")
        prio_ptr = &prio[0]
    out = np.empty(s.K, dtype=np.int64)
    cdef long[::1] o = out
    cdef long rc
    with nogil:
        rc = c_assign_greedy_insert(&s, &mem[0], &cap[0], width, &fixed[0], prio_ptr, &o[0])
    if rc != 0:
        raise MemoryError("greedy insertion could not allocate its working memory")
    return out


def dispatch(const long[::1] assign, int rule, const double[:, ::1] r, const double[:, ::1] p,
             const double[:, ::1] g, const double[:, ::1] pb, const double[:, ::1] q, floor=None):
    """Job order of every helper under one rule, flat: (seq_client, seq_kind, offsets of length H + 1)."""
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    _check_assign(assign, s.K, s.H)
    _check_rule(rule)
    cdef long K = s.K
    cdef long H = s.H
    seq_client = np.empty(2 * K, dtype=np.int64)
    seq_kind = np.empty(2 * K, dtype=np.int64)
    offsets = np.zeros(H + 1, dtype=np.int64)
    cdef long[::1] sc = seq_client
    cdef long[::1] sk = seq_kind
    cdef long[::1] off = offsets
    cdef Scratch scr
    cdef long i, j, k, n
    cdef long* members = <long*>malloc((4 * K + H + 1) * sizeof(long))
    cdef long* start = members + K
    cdef long* jobs = members + K + H + 1
    scr.h1.data = <Entry*>malloc(3 * (K + 1) * sizeof(Entry))
    scr.h2.data = scr.h1.data + (K + 1)
    scr.h3.data = scr.h1.data + 2 * (K + 1)
    if not members or not scr.h1.data:
        free(members); free(scr.h1.data)
        raise MemoryError()
    with nogil:
        for i in range(H + 1):
            start[i] = 0
        for j in range(K):
            start[assign[j] + 1] += 1
        for i in range(H):
            start[i + 1] += start[i]
        for i in range(H):
            off[i] = start[i]
        for j in range(K):
            members[off[assign[j]]] = j
            off[assign[j]] += 1
        off[0] = 0
        for i in range(H):
            n = start[i + 1] - start[i]
            c_dispatch_helper(&s, &members[start[i]], n, i, rule, jobs, &scr)
            for k in range(2 * n):
                sc[2 * start[i] + k] = jobs[k] >> 1
                sk[2 * start[i] + k] = jobs[k] & 1
            off[i + 1] = 2 * start[i + 1]
    free(members); free(scr.h1.data)
    return seq_client, seq_kind, offsets


def evaluate(const long[::1] assign, const long[::1] seq_client, const long[::1] seq_kind,
             const long[::1] offsets, const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
             const double[:, ::1] pb, const double[:, ::1] q, floor=None):
    """Start and end of every client's forward and backward job, and each client's finish time."""
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    _check_assign(assign, s.K, s.H)
    if seq_client.shape[0] != 2 * s.K or seq_kind.shape[0] != 2 * s.K or offsets.shape[0] != s.H + 1:
        raise ValueError("job sequence arrays do not match the instance size")
    out = np.empty((5, s.K), dtype=np.float64)
    cdef double[:, ::1] o = out
    with nogil:
        c_evaluate(&s, &seq_client[0], &seq_kind[0], &offsets[0], &o[0, 0], &o[1, 0], &o[2, 0], &o[3, 0], &o[4, 0])
    return out[0], out[1], out[2], out[3], out[4]


def pick_next(double now, const long[::1] kind, const double[::1] release, const double[::1] tail,
              const long[::1] client, int rule):
    """Online decision: index of the job to run next among those released by `now`, or -1 if none is."""
    cdef long n = kind.shape[0]
    if n == 0:
        return -1
    return c_pick_next(now, &kind[0], &release[0], &tail[0], &client[0], n, rule)


def new_memo(long K):
    """An empty span memo for local_search on K clients: (keys uint64, spans float64), a power-of-two size."""
    size = 1 << 12
    while size < 64 * K and size < (1 << 20):
        size <<= 1
    return np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=np.float64)


def local_search(const long[::1] assign, const double[:, ::1] r, const double[:, ::1] p,
                 const double[:, ::1] g, const double[:, ::1] pb, const double[:, ::1] q,
                 const double[::1] mem, const double[::1] cap, seed, long budget, long long deadline_ns=0,
                 memo=None, floor=None, bint relief_swaps=False):
    """Improve a feasible assignment; returns (assign, seq_client, seq_kind, offsets, stats).

    deadline_ns > 0 also stops the search at that time.monotonic_ns() value (stats[5] says it did). memo, from
    new_memo, keeps helper spans of client sets across calls on the same instance (a fresh one if None).
    relief_swaps swaps out only the clients whose removal shortens the critical helper's span.
    """
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    _check_assign(assign, s.K, s.H)
    if memo is None:
        memo = new_memo(s.K)
    cdef uint64_t[::1] memo_keys = memo[0]
    cdef double[::1] memo_spans = memo[1]
    cdef long memo_size = memo_keys.shape[0]
    if memo_size < 1 or memo_size & (memo_size - 1) or memo_spans.shape[0] != memo_size:
        raise ValueError("memo must be two arrays of the same power-of-two length, as new_memo makes them")
    cdef uint64_t sd = <uint64_t>(seed & _MASK)
    out = np.array(assign, dtype=np.int64)
    seq_client = np.empty(2 * s.K, dtype=np.int64)
    seq_kind = np.empty(2 * s.K, dtype=np.int64)
    offsets = np.zeros(s.H + 1, dtype=np.int64)
    stats = np.zeros(6, dtype=np.int64)
    cdef long[::1] a = out
    cdef long[::1] sc = seq_client
    cdef long[::1] sk = seq_kind
    cdef long[::1] off = offsets
    cdef long[::1] st = stats
    cdef long rc
    with nogil:
        rc = c_local_search(&s, &mem[0], &cap[0], &a[0], sd, budget, deadline_ns, &memo_keys[0], &memo_spans[0],
                            memo_size, &sc[0], &sk[0], &off[0], &st[0], relief_swaps)
    if rc != 0:
        raise MemoryError("local search could not allocate its working memory")
    return out, seq_client, seq_kind, offsets, stats


def lower_bound(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                const double[:, ::1] pb, const double[:, ::1] q, const double[::1] mem, const double[::1] cap,
                floor=None):
    """(chain bound, load bound); the makespan of every plan is at least the larger of the two."""
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    cdef double out[2]
    with nogil:
        c_lower_bound(&s, &mem[0], &cap[0], out)
    return out[0], out[1]


def window_bound(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                 const double[:, ::1] pb, const double[:, ::1] q, const double[::1] mem, const double[::1] cap,
                 const double[::1] wa, const double[::1] wb, floor=None):
    """(bound, a, b): max over windows [a, C - b] of a + b + the pigeonhole load of the work that must fall inside."""
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    cdef double out[3]
    cdef double zero = 0.0
    cdef double[::1] v = np.empty(s.K, dtype=np.float64)
    cdef double[::1] prefix = np.empty(s.K + 1, dtype=np.float64)
    with nogil:
        c_window_bound(&s, &mem[0], &cap[0], &wa[0] if wa.shape[0] else &zero, wa.shape[0],
                       &wb[0] if wb.shape[0] else &zero, wb.shape[0], &v[0], &prefix[0], out)
    return out[0], out[1], out[2]


def joint_bound(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                const double[:, ::1] pb, const double[:, ::1] q, const double[::1] mem, const double[::1] cap,
                const double[::1] room, const double[::1] ga, const double[::1] gb, long rounds, floor=None):
    """A Lagrangian bound coupling one window per helper, helper weights and memory multipliers (coordinate ascent)."""
    cdef Inst s = make_inst(r, p, g, pb, q, floor)
    cdef long G = ga.shape[0]
    if gb.shape[0] != G or room.shape[0] != s.H:
        raise ValueError("ga and gb need one entry per window, room one per helper")
    cdef double[::1] work = np.empty(s.K * s.H + 4 * s.K + 4 * s.H, dtype=np.float64)
    cdef long[::1] index = np.empty(s.K + s.H, dtype=np.int64)
    cdef double out
    cdef double zero = 0.0
    with nogil:
        out = c_joint_bound(&s, &mem[0], &cap[0], &room[0], &ga[0] if G else &zero, &gb[0] if G else &zero, G,
                            rounds, &work[0], &index[0])
    return out


def jackson_preemptive(const double[::1] release, const double[::1] proc, const double[::1] tail,
                       const double[::1] block_start, const double[::1] block_end):
    """(completion times, max(C + Q), piece job, piece start, piece end); blocks sorted and disjoint."""
    cdef long n = release.shape[0]
    cdef long nb = block_start.shape[0]
    if proc.shape[0] != n or tail.shape[0] != n or block_end.shape[0] != nb:
        raise ValueError("release, proc and tail need one entry per job; block_start and block_end one per block")
    cdef long cap = 2 * n + nb + 1
    completion = np.zeros(n, dtype=np.float64)
    pjob = np.empty(cap, dtype=np.int64)
    pstart = np.empty(cap, dtype=np.float64)
    pend = np.empty(cap, dtype=np.float64)
    cdef double[::1] c = completion
    cdef long[::1] pj = pjob
    cdef double[::1] ps = pstart
    cdef double[::1] pe = pend
    cdef double objective = 0.0
    cdef double zero = 0.0
    cdef long npieces
    cdef Heap pending, ready
    pending.data = <Entry*>malloc((2 * n + 1) * sizeof(Entry))
    ready.data = pending.data + n + 1 if pending.data else NULL
    cdef double* remaining = <double*>malloc((n + 1) * sizeof(double))
    if not pending.data or not remaining:
        free(pending.data); free(remaining)
        raise MemoryError()
    with nogil:
        npieces = c_jackson(&release[0] if n else &zero, &proc[0] if n else &zero, &tail[0] if n else &zero, n,
                            &block_start[0] if nb else &zero, &block_end[0] if nb else &zero, nb,
                            &c[0] if n else &zero, &objective, &pj[0], &ps[0], &pe[0], &pending, &ready, remaining)
    free(pending.data); free(remaining)
    return completion, objective, pjob[:npieces].copy(), pstart[:npieces].copy(), pend[:npieces].copy()


cdef inline int _check_pipe_rule(int rule) except -1:
    if rule != C_PIPE_FCFS and rule != C_PIPE_WORK:
        raise ValueError(f"unknown pipeline dispatch rule {rule}; expected one of {PIPE_RULES}")
    return 0


def pipe_span(const long[::1] clients, long i, int rule, const long[::1] micro, const double[:, ::1] r,
              const double[:, ::1] g, const double[:, ::1] q, const double[:, :, ::1] st):
    """The latest finish of `clients` on helper i with their micro-batch jobs chosen by `rule` (0.0 for none)."""
    cdef Pipe s = make_pipe(micro, r, g, q, st)
    _check_pipe_rule(rule)
    cdef long nc = clients.shape[0]
    cdef long c
    if i < 0 or i >= s.H:
        raise ValueError(f"helper {i} is not in [0, {s.H})")
    for c in range(nc):
        if clients[c] < 0 or clients[c] >= s.K:
            raise ValueError(f"client {clients[c]} is not in [0, {s.K})")
    if nc == 0:
        return 0.0
    cdef double span
    with nogil:
        span = c_run_helper(&s, i, &clients[0], nc, rule, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
    if span < 0.0:
        raise MemoryError("pipe_span could not allocate its work arrays")
    return span


def pipe_dispatch(const long[::1] assign, int rule, const long[::1] micro, const double[:, ::1] r,
                  const double[:, ::1] g, const double[:, ::1] q, const double[:, :, ::1] st):
    """Every helper's micro-batch job order under a rule, flat (seq_client, seq_kind, offsets), and its span."""
    cdef Pipe s = make_pipe(micro, r, g, q, st)
    _check_pipe_rule(rule)
    _check_assign(assign, s.K, s.H)
    cdef long total = 0, i, j, nc, pos = 0
    for j in range(s.K):
        total += 2 * micro[j]
    seq_client_a = np.empty(total, dtype=np.int64)
    seq_kind_a = np.empty(total, dtype=np.int64)
    offsets_a = np.zeros(s.H + 1, dtype=np.int64)
    span_a = np.zeros(s.H, dtype=np.float64)
    members_a = np.argsort(np.asarray(assign), kind="stable").astype(np.int64)
    cdef long[::1] seq_client = seq_client_a, seq_kind = seq_kind_a, offsets = offsets_a, members = members_a
    cdef double[::1] span = span_a
    cdef long lo = 0
    with nogil:
        for i in range(s.H):
            nc = 0
            while lo + nc < s.K and assign[members[lo + nc]] == i:
                nc += 1
            if nc > 0:
                span[i] = c_run_helper(&s, i, &members[lo], nc, rule, NULL, NULL, &seq_client[pos], &seq_kind[pos],
                                       NULL, NULL, NULL)
                for j in range(nc):
                    pos += 2 * micro[members[lo + j]]
            offsets[i + 1] = pos
            lo += nc
    if (span_a < 0.0).any():
        raise MemoryError("pipe_dispatch could not allocate its work arrays")
    return seq_client_a, seq_kind_a, offsets_a, span_a


def pipe_evaluate(const long[::1] assign, const long[::1] seq_client, const long[::1] seq_kind,
                  const long[::1] offsets, const long[::1] micro, const double[:, ::1] r, const double[:, ::1] g,
                  const double[:, ::1] q, const double[:, :, ::1] st):
    """Start and end of every job (flat, in plan order) and every client's finish, for valid job orders."""
    cdef Pipe s = make_pipe(micro, r, g, q, st)
    _check_assign(assign, s.K, s.H)
    cdef long total = 0, i, j, nc, lo = 0
    for j in range(s.K):
        total += 2 * micro[j]
    if seq_client.shape[0] != total or seq_kind.shape[0] != total or offsets.shape[0] != s.H + 1:
        raise ValueError("job sequence arrays do not match the instance's micro-batches")
    start_a = np.zeros(total, dtype=np.float64)
    end_a = np.zeros(total, dtype=np.float64)
    finish_a = np.zeros(s.K, dtype=np.float64)
    members_a = np.argsort(np.asarray(assign), kind="stable").astype(np.int64)
    cdef long[::1] members = members_a
    cdef double[::1] start = start_a, end = end_a, finish = finish_a
    cdef double span = 0.0
    if total == 0:
        return start_a, end_a, finish_a
    with nogil:
        for i in range(s.H):
            nc = 0
            while lo + nc < s.K and assign[members[lo + nc]] == i:
                nc += 1
            if nc > 0:
                span = c_run_helper(&s, i, &members[lo], nc, 0, &seq_client[offsets[i]], &seq_kind[offsets[i]],
                                    NULL, NULL, &start[offsets[i]], &end[offsets[i]], &finish[0])
                if span < 0.0:
                    break
            lo += nc
    if span < 0.0:
        raise MemoryError("pipe_evaluate could not allocate its work arrays")
    return start_a, end_a, finish_a
