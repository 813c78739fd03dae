# Evaluate fixed job orders (mirror of edgepsl/plan/pure/evaluate.py).

cdef void c_evaluate(Inst* s, const long* seq_client, const long* seq_kind, const long* offsets,
                     double* fwd_start, double* fwd_end, double* bwd_start, double* bwd_end,
                     double* finish) noexcept nogil:
    cdef long H = s.H
    cdef long i, k, j, ji
    cdef double tau, start, rel
    for j in range(s.K):
        fwd_start[j] = 0.0
        fwd_end[j] = 0.0
        bwd_start[j] = 0.0
        bwd_end[j] = 0.0
        finish[j] = 0.0
    for i in range(H):
        tau = 0.0
        for k in range(offsets[i], offsets[i + 1]):
            j = seq_client[k]
            ji = j * H + i
            if seq_kind[k] == C_FWD:
                rel = s.r[ji]
                start = tau if tau > rel else rel
                tau = start + s.p[ji]
                fwd_start[j] = start
                fwd_end[j] = tau
            else:
                rel = bwd_release(s, ji, fwd_end[j])
                start = tau if tau > rel else rel
                tau = start + s.pb[ji]
                bwd_start[j] = start
                bwd_end[j] = tau
                finish[j] = tau + s.q[ji]
