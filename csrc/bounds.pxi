# Lower bounds (mirror of edgepsl/plan/pure/bounds.py).

cdef void c_lower_bound(Inst* s, const double* mem, const double* cap, double* out) noexcept nogil:
    cdef long K = s.K
    cdef long H = s.H
    cdef long j, i, ji
    cdef double chain = 0.0
    cdef double total = 0.0
    cdef double min_r = -1.0
    cdef double min_q = -1.0
    cdef double best_chain, best_work, c, w
    for j in range(K):
        best_chain = -1.0
        best_work = -1.0
        for i in range(H):
            if mem[j] > cap[i]:
                continue
            ji = j * H + i
            c = s.r[ji] + s.p[ji] + s.g[ji] + s.pb[ji] + s.q[ji]
            w = s.p[ji] + s.pb[ji]
            if best_chain < 0 or c < best_chain:
                best_chain = c
            if best_work < 0 or w < best_work:
                best_work = w
            if min_r < 0 or s.r[ji] < min_r:
                min_r = s.r[ji]
            if min_q < 0 or s.q[ji] < min_q:
                min_q = s.q[ji]
        if best_chain > chain:
            chain = best_chain
        total += best_work
    out[0] = chain
    out[1] = min_r + total / H + min_q
