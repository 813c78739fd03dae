# Micro-batch pipelining on one helper (mirror of edgepsl/plan/pure/pipeline.py; the model is in its docstring
# and docs/planning.md, "Micro-batch pipelining").

cdef enum:
    ST_A1 = 0
    ST_U1 = 1
    ST_HF = 2
    ST_D2 = 3
    ST_M = 4
    ST_U2 = 5
    ST_HB = 6
    ST_D1 = 7
    ST_B1 = 8
    N_STAGES = 9
    C_PIPE_FCFS = 0
    C_PIPE_WORK = 1


cdef struct Pipe:
    const double* r
    const double* g
    const double* q
    const double* st
    const long* micro
    long K
    long H


cdef inline double dmax(double a, double b) noexcept nogil:
    return a if a > b else b


cdef double c_run_helper(const Pipe* s, long i, const long* clients, long nc, int rule, const long* ord_client,
                         const long* ord_kind, long* out_client, long* out_kind, double* out_start, double* out_end,
                         double* finish) noexcept nogil:
    """Run (ord_client != NULL) or choose (by rule) helper i's jobs; returns the span, -1.0 when out of memory."""
    cdef long H = s.H
    cdef long c, k, m, j, n, total = 0, step, kind, bc, bkind
    cdef double tau = 0.0, f1, rel, start, span = 0.0, work, bkey0, bkey1, earliest, key0, key1, cc
    cdef const double* sj
    for c in range(nc):
        total += s.micro[clients[c]]
    cdef long* base = <long*> malloc((5 * nc + 1) * sizeof(long))
    cdef double* buf = <double*> malloc((3 * total + 4 * nc + 1) * sizeof(double))
    if base == NULL or buf == NULL:
        free(base); free(buf)
        return -1.0
    cdef long* off = base
    cdef long* nf = base + nc
    cdef long* nb = base + 2 * nc
    cdef long* pos_of = base + 3 * nc   # client index -> position, only for the clients here (searched below)
    cdef double* relf = buf
    cdef double* relb = buf + total
    cdef double* dn1 = buf + 2 * total
    cdef double* cpu = buf + 3 * total
    cdef double* up = cpu + nc
    cdef double* down = up + nc
    cdef double* fin = down + nc
    m = 0
    for c in range(nc):
        j = clients[c]
        n = s.micro[j]
        off[c] = m
        nf[c] = 0
        nb[c] = 0
        pos_of[c] = j
        cpu[c] = 0.0
        up[c] = 0.0
        down[c] = 0.0
        fin[c] = 0.0
        sj = s.st + (j * H + i) * N_STAGES
        if n == 1:
            relf[m] = s.r[j * H + i]
        else:
            f1 = 0.0
            for k in range(n):
                f1 += sj[ST_A1]
                up[c] = dmax(f1, up[c]) + sj[ST_U1]
                relf[m + k] = up[c]
            cpu[c] = f1
        m += n
    for step in range(2 * total):
        if ord_client != NULL:
            j = ord_client[step]
            kind = ord_kind[step]
            bc = 0
            while pos_of[bc] != j:
                bc += 1
        else:
            bc = -1
            bkind = 0
            bkey0 = 0.0
            bkey1 = 0.0
            earliest = -1.0
            while bc < 0:
                for c in range(nc):
                    j = clients[c]
                    n = s.micro[j]
                    for kind in range(C_BWD, C_FWD - 1, -1):
                        if kind == C_FWD and nf[c] >= n:
                            continue
                        if kind == C_BWD and nb[c] >= nf[c]:
                            continue
                        rel = relf[off[c] + nf[c]] if kind == C_FWD else relb[off[c] + nb[c]]
                        if earliest < 0.0 or rel < earliest:
                            earliest = rel
                        if rule == C_PIPE_FCFS:
                            key0 = rel
                        else:
                            if rel > tau:
                                continue
                            sj = s.st + (j * H + i) * N_STAGES
                            key0 = -((n - nf[c]) * sj[ST_HF] + (n - nb[c]) * sj[ST_HB])
                        key1 = 1 - kind
                        if bc < 0 or key0 < bkey0 or (key0 == bkey0 and key1 < bkey1):
                            bc = c
                            bkind = kind
                            bkey0 = key0
                            bkey1 = key1
                if bc < 0:
                    tau = earliest
            kind = bkind
            j = clients[bc]
        c = bc
        n = s.micro[j]
        sj = s.st + (j * H + i) * N_STAGES
        if kind == C_FWD:
            rel = relf[off[c] + nf[c]]
            start = dmax(tau, rel)
            tau = start + sj[ST_HF]
            k = nf[c]
            nf[c] += 1
            if n == 1:
                relb[off[c]] = tau + s.g[j * H + i]
            else:
                down[c] = dmax(tau, down[c]) + sj[ST_D2]
                cpu[c] = dmax(down[c], cpu[c]) + sj[ST_M]
                up[c] = dmax(cpu[c], up[c]) + sj[ST_U2]
                relb[off[c] + k] = up[c]
        else:
            rel = relb[off[c] + nb[c]]
            start = dmax(tau, rel)
            tau = start + sj[ST_HB]
            k = nb[c]
            nb[c] += 1
            if n == 1:
                fin[c] = tau + s.q[j * H + i]
            else:
                down[c] = dmax(tau, down[c]) + sj[ST_D1]
                dn1[off[c] + k] = down[c]
                if nb[c] == n:
                    cc = cpu[c]
                    for m in range(n):
                        cc = dmax(cc, dn1[off[c] + m]) + sj[ST_B1]
                    fin[c] = cc
        if out_client != NULL:
            out_client[step] = j
            out_kind[step] = kind
        if out_start != NULL:
            out_start[step] = start
            out_end[step] = tau
    for c in range(nc):
        if finish != NULL:
            finish[clients[c]] = fin[c]
        if fin[c] > span:
            span = fin[c]
    free(base); free(buf)
    return span


cdef inline Pipe make_pipe(const long[::1] micro, const double[:, ::1] r, const double[:, ::1] g,
                           const double[:, ::1] q, const double[:, :, ::1] st):
    cdef Pipe s
    cdef long j
    s.K = r.shape[0]
    s.H = r.shape[1]
    if (g.shape[0] != s.K or g.shape[1] != s.H or q.shape[0] != s.K or q.shape[1] != s.H or micro.shape[0] != s.K
            or st.shape[0] != s.K or st.shape[1] != s.H or st.shape[2] != N_STAGES):
        raise ValueError(f"r, g, q must be ({s.K}, {s.H}), micro ({s.K},) and st ({s.K}, {s.H}, {N_STAGES})")
    if s.K < 1 or s.H < 1:
        raise ValueError("the kernels need at least one client and one helper")
    for j in range(s.K):
        if micro[j] < 1:
            raise ValueError(f"client {j} has {micro[j]} micro-batches; N >= 1")
    s.r = &r[0, 0]
    s.g = &g[0, 0]
    s.q = &q[0, 0]
    s.st = &st[0, 0, 0]
    s.micro = &micro[0]
    return s
