# Per-helper dispatch (mirror of edgepsl/plan/pure/dispatch.py). Jobs are encoded as client * 2 + kind.

cdef struct Scratch:
    Heap h1
    Heap h2
    Heap h3

cdef inline void ready_push(Heap* h, int rule, long kind, double tail, long client) noexcept nogil:
    if rule == C_RULE_FWD_FIRST:
        heap_push(h, <double>kind, -tail, client, client, kind)
    else:
        heap_push(h, -tail, <double>kind, client, client, kind)


cdef double c_dispatch_helper(Inst* s, const long* clients, long n, long i, int rule, long* jobs,
                              Scratch* sc) noexcept nogil:
    """Order the jobs of clients[0:n] (ascending) on helper i into jobs[0:2n]; returns the span."""
    cdef long H = s.H
    cdef double span = 0.0
    cdef double tau = 0.0
    cdef double start, t_next
    cdef long k, j, ji, kind, seq, done = 0
    cdef Entry e
    cdef Heap* heap = &sc.h1
    cdef Heap* pending = &sc.h1
    cdef Heap* future = &sc.h2
    cdef Heap* ready = &sc.h3
    if rule == C_RULE_FCFS:
        heap.size = 0
        for k in range(n):
            j = clients[k]
            heap_push(heap, s.r[j * H + i], <double>k, 0, j, C_FWD)
        seq = n
        while heap.size > 0:
            e = heap_pop(heap)
            j = e.a
            ji = j * H + i
            start = tau if tau > e.k0 else e.k0
            jobs[done] = 2 * j + e.b
            done += 1
            if e.b == C_FWD:
                tau = start + s.p[ji]
                heap_push(heap, bwd_release(s, ji, tau), <double>seq, 0, j, C_BWD)
                seq += 1
            else:
                tau = start + s.pb[ji]
                if tau + s.q[ji] > span:
                    span = tau + s.q[ji]
        return span
    pending.size = 0
    future.size = 0
    ready.size = 0
    for k in range(n):
        j = clients[k]
        heap_push(pending, s.r[j * H + i], <double>j, 0, j, C_FWD)
    while done < 2 * n:
        while pending.size > 0 and pending.data[0].k0 <= tau:
            e = heap_pop(pending)
            j = e.a
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
            if pending.size > 0:
                t_next = pending.data[0].k0
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
