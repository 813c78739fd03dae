# Lower bounds (mirror of edgepsl/plan/pure/bounds.py).
from libc.stdlib cimport qsort

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
    cdef double load = total / H
    cdef double weighted = 0.0
    cdef double tot = 0.0
    cdef double best, v
    cdef bint positive = True
    cdef double* lam = <double*>malloc(H * sizeof(double))
    if lam:
        for i in range(H):
            lam[i] = 0.0
        for j in range(K):
            for i in range(H):
                ji = j * H + i
                lam[i] += s.p[ji] + s.pb[ji]
        for i in range(H):
            if not lam[i] > 0:
                positive = False
        if positive:
            for i in range(H):
                lam[i] = 1.0 / (lam[i] / K)
            for i in range(H):
                tot += lam[i]
            for i in range(H):
                lam[i] = lam[i] / tot
            for j in range(K):
                best = -1.0
                for i in range(H):
                    if mem[j] > cap[i]:
                        continue
                    ji = j * H + i
                    v = lam[i] * (s.p[ji] + s.pb[ji])
                    if best < 0 or v < best:
                        best = v
                weighted += best
            if weighted > load:
                load = weighted
        free(lam)
    out[0] = chain
    out[1] = min_r + load + min_q


cdef inline double mandatory(double release, double proc, double tail, double a, double b) noexcept nogil:
    """Work of a job that must fall inside the window [a, C - b] of any schedule ending by C (energetic reasoning)."""
    cdef double early = a - release
    cdef double late = b - tail
    cdef double w = proc
    if early > 0:
        w -= early
    if late > 0:
        w -= late
    return w if w > 0 else 0.0


cdef int desc_double(const void* x, const void* y) noexcept nogil:
    cdef double u = (<const double*>x)[0]
    cdef double v = (<const double*>y)[0]
    return (u < v) - (u > v)


cdef void c_window_bound(Inst* s, const double* mem, const double* cap, const double* wa, long na,
                         const double* wb, long nb, double* v, double* prefix, double* out) noexcept nogil:
    cdef long K = s.K
    cdef long H = s.H
    cdef long j, i, ji, x, y, t, n, npos
    cdef double a, b, best_i, m, w, value
    out[0] = 0.0
    out[1] = 0.0
    out[2] = 0.0
    for x in range(na):
        a = wa[x]
        for y in range(nb):
            b = wb[y]
            npos = 0
            for j in range(K):
                best_i = -1.0
                for i in range(H):
                    if mem[j] > cap[i]:
                        continue
                    ji = j * H + i
                    m = mandatory(s.r[ji], s.p[ji], s.g[ji] + s.pb[ji] + s.q[ji], a, b)
                    m = m + mandatory(s.r[ji] + s.p[ji] + s.g[ji], s.pb[ji], s.q[ji], a, b)
                    if best_i < 0 or m < best_i:
                        best_i = m
                if best_i > 0:
                    v[npos] = best_i
                    npos += 1
            if npos == 0:
                continue
            qsort(v, npos, sizeof(double), desc_double)
            prefix[0] = 0.0
            for t in range(npos):
                prefix[t + 1] = prefix[t] + v[t]
            w = 0.0
            for t in range(1, npos + 1):
                n = (t + H - 1) // H
                if prefix[t] - prefix[t - n] > w:
                    w = prefix[t] - prefix[t - n]
            value = a + b + w
            if value > out[0]:
                out[0] = value
                out[1] = a
                out[2] = b
