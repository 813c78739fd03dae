# Assignment heuristics (mirror of edgepsl/plan/pure/assign.py). Unplaceable client: -1 and stop.

cdef void c_assign_random(const double* mem, const double* cap, long K, long H, uint64_t seed,
                          long* out, long* order, long* feasible, double* used) noexcept nogil:
    cdef uint64_t state = seed
    cdef long t, j, i, nf
    for j in range(K):
        out[j] = -1
    for i in range(H):
        used[i] = 0.0
    rng_permutation(&state, order, K)
    for t in range(K):
        j = order[t]
        nf = 0
        for i in range(H):
            if used[i] + mem[j] <= cap[i]:
                feasible[nf] = i
                nf += 1
        if nf == 0:
            return
        i = feasible[rng_below(&state, nf)]
        out[j] = i
        used[i] += mem[j]


cdef void c_assign_balanced_greedy(const double* mem, const double* cap, long K, long H,
                                   long* out, long* count, double* used) noexcept nogil:
    cdef long j, i, hi, lo, n_lo, next_lo, best, best_spread, new_lo, spread, c
    for j in range(K):
        out[j] = -1
    for i in range(H):
        used[i] = 0.0
        count[i] = 0
    for j in range(K):
        hi = count[0]
        lo = count[0]
        for i in range(H):
            if count[i] > hi:
                hi = count[i]
            if count[i] < lo:
                lo = count[i]
        n_lo = 0
        next_lo = -1
        for i in range(H):
            c = count[i]
            if c == lo:
                n_lo += 1
            elif next_lo < 0 or c < next_lo:
                next_lo = c
        best = -1
        best_spread = 0
        for i in range(H):
            if used[i] + mem[j] > cap[i]:
                continue
            new_lo = lo
            if count[i] == lo and n_lo == 1:
                if next_lo < 0:
                    new_lo = count[i] + 1
                else:
                    new_lo = count[i] + 1 if count[i] + 1 < next_lo else next_lo
            spread = (hi if hi > count[i] + 1 else count[i] + 1) - new_lo
            if best < 0 or spread < best_spread:
                best = i
                best_spread = spread
        if best < 0:
            return
        out[j] = best
        count[best] += 1
        used[best] += mem[j]


cdef void c_assign_greedy_eft(Inst* s, const double* mem, const double* cap, long* out, Heap* h,
                              double* used, double* work, double* chain, double* minr, double* minq,
                              long* count) noexcept nogil:
    cdef long K = s.K
    cdef long H = s.H
    cdef long j, i, t, best, ji
    cdef double w, c, lo, hi, est, new_work, best_est, best_work
    cdef Entry e
    for j in range(K):
        out[j] = -1
    for i in range(H):
        used[i] = 0.0
        work[i] = 0.0
        chain[i] = 0.0
        minr[i] = 0.0
        minq[i] = 0.0
        count[i] = 0
    h.size = 0
    for j in range(K):
        w = -1.0
        for i in range(H):
            ji = j * H + i
            if mem[j] <= cap[i] and (w < 0 or s.p[ji] + s.pb[ji] < w):
                w = s.p[ji] + s.pb[ji]
        heap_push(h, -w, <double>j, 0, j, 0)
    for t in range(K):
        e = heap_pop(h)
        j = e.a
        best = -1
        best_est = 0.0
        best_work = 0.0
        for i in range(H):
            if used[i] + mem[j] > cap[i]:
                continue
            ji = j * H + i
            w = s.p[ji] + s.pb[ji]
            c = chain_of(s, ji)
            if count[i] > 0:
                if chain[i] > c:
                    c = chain[i]
                lo = minr[i] if minr[i] < s.r[ji] else s.r[ji]
                hi = minq[i] if minq[i] < s.q[ji] else s.q[ji]
            else:
                lo = s.r[ji]
                hi = s.q[ji]
            est = lo + work[i] + w + hi
            if c > est:
                est = c
            new_work = work[i] + w
            if best < 0 or est < best_est or (est == best_est and new_work < best_work):
                best = i
                best_est = est
                best_work = new_work
        if best < 0:
            return
        i = best
        ji = j * H + i
        out[j] = i
        c = chain_of(s, ji)
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
        count[i] += 1
        work[i] += s.p[ji] + s.pb[ji]
        used[i] += mem[j]
