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
            c = chain_of(s, ji)
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
                    m = m + mandatory(bwd_release(s, ji, s.r[ji] + s.p[ji]), s.pb[ji], s.q[ji], a, b)
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


cdef double WEIGHT_FACTORS[4]
WEIGHT_FACTORS[:] = [0.5, 0.8, 1.25, 2.0]
cdef double MEMORY_STEPS[4]
MEMORY_STEPS[:] = [0.01, 0.1, 0.5, 1.0]
cdef double INF = float("inf")


cdef double joint_column(Inst* s, const double* mem, const double* cap, long i, double a, double b, double lam,
                         double nu, double* out) noexcept nogil:
    cdef long K = s.K
    cdef long H = s.H
    cdef long j, ji
    cdef double m
    cdef double total = 0.0
    for j in range(K):
        if mem[j] > cap[i]:
            out[j] = INF
            continue
        ji = j * H + i
        m = mandatory(s.r[ji], s.p[ji], s.g[ji] + s.pb[ji] + s.q[ji], a, b)
        m = m + mandatory(bwd_release(s, ji, s.r[ji] + s.p[ji]), s.pb[ji], s.q[ji], a, b)
        total += m
        out[j] = lam * m + nu * mem[j]
    return total


cdef void joint_top2(const double* cost, long K, long H, double* m1, long* arg, double* m2) noexcept nogil:
    cdef long j, i
    cdef double c
    for j in range(K):
        m1[j] = INF
        arg[j] = 0
        m2[j] = INF
        for i in range(H):
            c = cost[j * H + i]
            if c < m1[j]:
                m2[j] = m1[j]
                m1[j] = c
                arg[j] = i
            elif c < m2[j]:
                m2[j] = c


cdef double joint_value(long i, double lam_i, double nu_i, double ab_i, const double* column, const double* m1,
                        const long* arg, const double* m2, const double* lam, const double* nu,
                        const double* ab_sel, const double* room, long K, long H) noexcept nogil:
    cdef long j, k
    cdef double other, lk
    cdef double total = 0.0
    cdef double head = 0.0
    cdef double weight = 0.0
    cdef double paid = 0.0
    for j in range(K):
        other = m2[j] if arg[j] == i else m1[j]
        total += column[j] if column[j] < other else other
    for k in range(H):
        lk = lam_i if k == i else lam[k]
        head += lk * (ab_i if k == i else ab_sel[k])
        weight += lk
        paid += (nu_i if k == i else nu[k]) * room[k]
    return (head + total - paid) / weight


cdef double c_joint_bound(Inst* s, const double* mem, const double* cap, const double* room, const double* ga,
                          const double* gb, long G, long rounds, double* work, long* index) noexcept nogil:
    """work holds K * H + 4 * K + 4 * H doubles, index K + H longs (per client its cheapest helper, per helper its
    window)."""
    cdef long K = s.K
    cdef long H = s.H
    cdef long i, j, w, t, n, rnd
    cdef long nf = 4
    cdef long ns = 4
    cdef double best, v, lam_i, nu_i, total, current
    if G == 0 or rounds <= 0:
        return 0.0
    cdef double* cost = work
    cdef double* col = work + K * H
    cdef double* m1 = col + K
    cdef double* m2 = m1 + K
    cdef double* first = m2 + K
    cdef double* lam = first + K
    cdef double* nu = lam + H
    cdef double* load = nu + H
    cdef double* ab_sel = load + H
    cdef long* arg = index
    cdef long* sel = index + K
    for i in range(H):
        best = -1.0
        sel[i] = 0
        for w in range(G):
            v = ga[w] + gb[w] + joint_column(s, mem, cap, i, ga[w], gb[w], 1.0, 0.0, col) / H
            if v > best:
                best = v
                sel[i] = w
    for i in range(H):
        lam[i] = 1.0 / H
        nu[i] = 0.0
    for i in range(H):
        w = sel[i]
        load[i] = joint_column(s, mem, cap, i, ga[w], gb[w], lam[i], nu[i], col)
        for j in range(K):
            cost[j * H + i] = col[j]
    joint_top2(cost, K, H, m1, arg, m2)
    for i in range(H):
        w = sel[i]
        ab_sel[i] = ga[w] + gb[w]
    for j in range(K):
        first[j] = cost[j * H]
    current = joint_value(0, lam[0], nu[0], ab_sel[0], first, m1, arg, m2, lam, nu, ab_sel, room, K, H)
    for rnd in range(rounds):
        for i in range(H):
            n = G + nf + (ns if room[i] > 0 else 0)
            for t in range(n):
                if t < G:
                    w = t
                    lam_i = lam[i]
                    nu_i = nu[i]
                elif t < G + nf:
                    w = sel[i]
                    lam_i = lam[i] * WEIGHT_FACTORS[t - G]
                    nu_i = nu[i]
                else:
                    w = sel[i]
                    lam_i = lam[i]
                    nu_i = nu[i] + MEMORY_STEPS[t - G - nf] * lam[i] * load[i] / room[i]
                total = joint_column(s, mem, cap, i, ga[w], gb[w], lam_i, nu_i, col)
                v = joint_value(i, lam_i, nu_i, ga[w] + gb[w], col, m1, arg, m2, lam, nu, ab_sel, room, K, H)
                if v > current:
                    current = v
                    sel[i] = w
                    lam[i] = lam_i
                    nu[i] = nu_i
                    load[i] = total
                    ab_sel[i] = ga[w] + gb[w]
                    for j in range(K):
                        cost[j * H + i] = col[j]
                    joint_top2(cost, K, H, m1, arg, m2)
    return current
