# Per-helper dispatch (mirror of edgepsl/plan/pure/dispatch.py). Jobs are encoded as client * 2 + kind.
from libc.string cimport memcpy

cdef struct Scratch:
    Heap h1
    Heap h2
    Heap h3

cdef inline void ready_push(Heap* h, int rule, long kind, double tail, long client) noexcept nogil:
    if rule == C_RULE_FWD_FIRST:
        heap_push(h, <double>kind, -tail, client, client, kind)
    else:
        heap_push(h, -tail, <double>kind, client, client, kind)


# Up to this many clients, the forward jobs are sorted by release with an insertion sort; above it, through a heap.
DEF INSERTION_SORT_MAX = 32


cdef inline void sort_by_release(Inst* s, const long* clients, long n, long i, Heap* tmp, Entry* out) noexcept nogil:
    """out[0:n] = the clients' forward jobs as (release, position in clients), ascending; ties keep list order."""
    cdef long k, x
    cdef Entry e
    if n <= INSERTION_SORT_MAX:
        for k in range(n):
            e.k0 = s.r[clients[k] * s.H + i]
            e.k1 = <double>k
            e.k2 = 0
            e.a = clients[k]
            e.b = C_FWD
            x = k
            while x > 0 and out[x - 1].k0 > e.k0:
                out[x] = out[x - 1]
                x -= 1
            out[x] = e
        return
    tmp.size = 0
    for k in range(n):
        heap_push(tmp, s.r[clients[k] * s.H + i], <double>k, 0, clients[k], C_FWD)
    for k in range(n):
        out[k] = heap_pop(tmp)


cdef double c_dispatch_helper(Inst* s, const long* clients, long n, long i, int rule, long* jobs,
                              Scratch* sc) noexcept nogil:
    """Order the jobs of clients[0:n] (ascending) on helper i into jobs[0:2n]; returns the span."""
    sort_by_release(s, clients, n, i, &sc.h3, sc.h1.data)
    return c_dispatch_sorted(s, sc.h1.data, n, i, rule, jobs, sc)


cdef double c_best_dispatch(Inst* s, const long* clients, long n, long i, long* tmp, long* out,
                            Scratch* sc) noexcept nogil:
    """The smallest span of the rules (the first rule wins ties) for clients[0:n] on helper i; its job order goes
    to out[0:2n] unless out is NULL (tmp: 2n scratch jobs). The forward jobs are sorted once for all rules."""
    cdef double best_span = -1.0
    cdef double span
    cdef int rule
    sort_by_release(s, clients, n, i, &sc.h3, sc.h1.data)
    for rule in range(N_RULES):
        span = c_dispatch_sorted(s, sc.h1.data, n, i, rule, tmp, sc)
        if best_span < 0 or span < best_span:
            if out != NULL:
                memcpy(out, tmp, 2 * n * sizeof(long))
            best_span = span
    return best_span


cdef double c_dispatch_sorted(Inst* s, const Entry* fwd, long n, long i, int rule, long* jobs,
                              Scratch* sc) noexcept nogil:
    """c_dispatch_helper with the forward jobs already sorted (sort_by_release; not in sc.h2 or sc.h3): they are
    taken from that array rather than a heap, the same order as the pure twin's heap with fewer moves."""
    cdef long H = s.H
    cdef double span = 0.0
    cdef double tau = 0.0
    cdef double start, t_next
    cdef long j, ji, kind, seq, done = 0, nxt = 0
    cdef Entry e
    cdef Heap* future = &sc.h2
    cdef Heap* ready = &sc.h3
    future.size = 0
    ready.size = 0
    if rule == C_RULE_FCFS:
        # The pending list of the paper's FIFO: forward jobs by (release, position), backward jobs by (release,
        # arrival); at equal releases a forward job (position < n) goes before a backward one (arrival >= n).
        seq = n
        while done < 2 * n:
            if nxt < n and (future.size == 0 or fwd[nxt].k0 <= future.data[0].k0):
                e = fwd[nxt]
                nxt += 1
            else:
                e = heap_pop(future)
            j = e.a
            ji = j * H + i
            start = tau if tau > e.k0 else e.k0
            jobs[done] = 2 * j + e.b
            done += 1
            if e.b == C_FWD:
                tau = start + s.p[ji]
                heap_push(future, bwd_release(s, ji, tau), <double>seq, 0, j, C_BWD)
                seq += 1
            else:
                tau = start + s.pb[ji]
                if tau + s.q[ji] > span:
                    span = tau + s.q[ji]
        return span
    while done < 2 * n:
        while nxt < n and fwd[nxt].k0 <= tau:
            j = fwd[nxt].a
            nxt += 1
            ji = j * H + i
            if rule == C_RULE_FWD_FIRST:
                ready_push(ready, rule, C_FWD, s.g[ji], j)
            else:
                ready_push(ready, rule, C_FWD, s.g[ji] + s.pb[ji] + s.q[ji], j)
        while future.size > 0 and future.data[0].k0 <= tau:
            e = heap_pop(future)
            j = e.a
            ready_push(ready, rule, C_BWD, s.q[j * H + i], j)
        if ready.size == 0:
            if nxt < n:
                t_next = fwd[nxt].k0
                if future.size > 0 and future.data[0].k0 < t_next:
                    t_next = future.data[0].k0
            else:
                t_next = future.data[0].k0
            tau = t_next
            continue
        e = heap_pop(ready)
        j = e.a
        kind = e.b
        ji = j * H + i
        jobs[done] = 2 * j + kind
        done += 1
        if kind == C_FWD:
            tau = tau + s.p[ji]
            heap_push(future, bwd_release(s, ji, tau), <double>j, 0, j, C_BWD)
        else:
            tau = tau + s.pb[ji]
            if tau + s.q[ji] > span:
                span = tau + s.q[ji]
    return span


cdef double c_span_of(Inst* s, const long* jobs, long m, long i, double* fwd_end) noexcept nogil:
    """Span of helper i running jobs[0:m] in order (fwd_end is a per-client scratch array)."""
    cdef long H = s.H
    cdef double tau = 0.0
    cdef double span = 0.0
    cdef double rel
    cdef long k, j, ji
    for k in range(m):
        j = jobs[k] >> 1
        ji = j * H + i
        if (jobs[k] & 1) == C_FWD:
            rel = s.r[ji]
            tau = (tau if tau > rel else rel) + s.p[ji]
            fwd_end[j] = tau
        else:
            rel = bwd_release(s, ji, fwd_end[j])
            tau = (tau if tau > rel else rel) + s.pb[ji]
            if tau + s.q[ji] > span:
                span = tau + s.q[ji]
    return span


cdef long c_pick_next(double now, const long* kind, const double* release, const double* tail,
                      const long* client, long n, int rule) noexcept nogil:
    cdef long best = -1
    cdef long k
    cdef Entry e, b
    for k in range(n):
        if release[k] > now:
            continue
        if rule == C_RULE_FCFS:
            e.k0 = release[k]
            e.k1 = <double>k
            e.k2 = 0
        elif rule == C_RULE_FWD_FIRST:
            e.k0 = <double>kind[k]
            e.k1 = -tail[k]
            e.k2 = client[k]
        else:
            e.k0 = -tail[k]
            e.k1 = <double>kind[k]
            e.k2 = client[k]
        if best < 0 or entry_less(&e, &b):
            best = k
            b = e
    return best
