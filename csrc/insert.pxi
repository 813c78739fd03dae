# Greedy insertion (mirror of edgepsl/plan/pure/insert.py; read its docstring). Unplaceable client: -1 and stop.

cdef inline void place(Inst* s, long j, long i, const double* mem, double* used, double* work, double* chain,
                       double* minr, double* minq, long* count, long* members, long* out) noexcept nogil:
    """Record client j on helper i: its statistics, and its place in the helper's ascending member list."""
    cdef long K = s.K
    cdef long ji = j * s.H + i
    cdef long x = count[i]
    cdef double c = chain_of(s, ji)
    out[j] = i
    if count[i] > 0:
        if c > chain[i]:
            chain[i] = c
        if s.r[ji] < minr[i]:
            minr[i] = s.r[ji]
        if s.q[ji] < minq[i]:
            minq[i] = s.q[ji]
    else:
        chain[i] = c
        minr[i] = s.r[ji]
        minq[i] = s.q[ji]
    while x > 0 and members[i * K + x - 1] > j:
        members[i * K + x] = members[i * K + x - 1]
        x -= 1
    members[i * K + x] = j
    count[i] += 1
    work[i] += s.p[ji] + s.pb[ji]
    used[i] += mem[j]


cdef long c_assign_greedy_insert(Inst* s, const double* mem, const double* cap, long width, const long* start,
                                 const double* priority, long* out) noexcept nogil:
    """Clients with start[j] >= 0 stay there; the others are inserted, largest priority[j] first (NULL: largest
    smallest work first). Returns 0, or -1 when memory could not be allocated."""
    cdef long K = s.K
    cdef long H = s.H
    cdef long j, i, x, k, k2, n, ji, best, pick
    cdef double w, c, lo, hi, e, sp, other, m, best_m, best_s
    cdef Entry entry
    cdef Heap order
    cdef Scratch sc
    cdef long hcap = 2 * K + H + 1
    cdef double* used = <double*>malloc(7 * H * sizeof(double))
    cdef double* work = used + H
    cdef double* chain = used + 2 * H
    cdef double* minr = used + 3 * H
    cdef double* minq = used + 4 * H
    cdef double* span = used + 5 * H
    cdef double* est = used + 6 * H
    cdef long* count = <long*>malloc((2 * H + H * K + 3 * K) * sizeof(long))
    cdef long* state = count + H        # per helper: 0 no room, 1 candidate, 2 tried
    cdef long* members = count + 2 * H
    cdef long* grown = members + H * K
    cdef long* jobs = grown + K
    order.data = <Entry*>malloc((K + 1) * sizeof(Entry))
    sc.h1.data = <Entry*>malloc(3 * hcap * sizeof(Entry))
    sc.h2.data = sc.h1.data + hcap if sc.h1.data else NULL
    sc.h3.data = sc.h1.data + 2 * hcap if sc.h1.data else NULL
    if not used or not count or not order.data or not sc.h1.data:
        free(used); free(count); free(order.data); free(sc.h1.data)
        return -1
    for j in range(K):
        out[j] = -1
    for i in range(H):
        used[i] = 0.0
        work[i] = 0.0
        chain[i] = 0.0
        minr[i] = 0.0
        minq[i] = 0.0
        span[i] = 0.0
        count[i] = 0
    for j in range(K):
        if start[j] >= 0:
            place(s, j, start[j], mem, used, work, chain, minr, minq, count, members, out)
    for i in range(H):
        if count[i] > 0:
            span[i] = c_best_dispatch(s, &members[i * K], count[i], i, jobs, NULL, &sc)
    order.size = 0
    for j in range(K):
        if start[j] >= 0:
            continue
        w = -1.0
        if priority != NULL:
            w = priority[j]
        else:
            for i in range(H):
                ji = j * H + i
                if mem[j] <= cap[i] and (w < 0 or s.p[ji] + s.pb[ji] < w):
                    w = s.p[ji] + s.pb[ji]
        heap_push(&order, -w, <double>j, 0, j, 0)
    while order.size > 0:
        entry = heap_pop(&order)
        j = entry.a
        for i in range(H):
            state[i] = 0
            if used[i] + mem[j] > cap[i]:
                continue
            ji = j * H + i
            c = chain_of(s, ji)
            if count[i] > 0:
                if chain[i] > c:
                    c = chain[i]
                lo = minr[i] if minr[i] < s.r[ji] else s.r[ji]
                hi = minq[i] if minq[i] < s.q[ji] else s.q[ji]
            else:
                lo = s.r[ji]
                hi = s.q[ji]
            e = lo + work[i] + (s.p[ji] + s.pb[ji]) + hi
            if c > e:
                e = c
            est[i] = e if e > span[i] else span[i]
            state[i] = 1
        best = -1
        best_m = 0.0
        best_s = 0.0
        for k in range(width):
            pick = -1
            for i in range(H):
                if state[i] == 1 and (pick < 0 or est[i] < est[pick]):
                    pick = i
            if pick < 0:
                break
            i = pick
            state[i] = 2
            n = count[i]
            x = n
            while x > 0 and members[i * K + x - 1] > j:
                grown[x] = members[i * K + x - 1]
                x -= 1
            grown[x] = j
            for k2 in range(x):
                grown[k2] = members[i * K + k2]
            sp = c_best_dispatch(s, grown, n + 1, i, jobs, NULL, &sc)
            other = 0.0
            for x in range(H):
                if x != i and span[x] > other:
                    other = span[x]
            m = other if other > sp else sp
            if best < 0 or m < best_m or (m == best_m and (sp < best_s or (sp == best_s and i < best))):
                best = i
                best_m = m
                best_s = sp
        if best < 0:
            break
        place(s, j, best, mem, used, work, chain, minr, minq, count, members, out)
        span[best] = best_s
    free(used); free(count); free(order.data); free(sc.h1.data)
    return 0
