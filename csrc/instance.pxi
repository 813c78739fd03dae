# The five K x H arrays the kernels read, as raw row-major pointers (H is the row stride), and the optional floor w of
# the backward releases (local-loss clients; NULL when no client has one).
cdef struct Inst:
    const double* r
    const double* p
    const double* g
    const double* pb
    const double* q
    const double* w
    long K
    long H

cdef inline Inst make_inst(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                           const double[:, ::1] pb, const double[:, ::1] q, w=None):
    cdef Inst s
    cdef const double[:, ::1] wv
    s.K = r.shape[0]
    s.H = r.shape[1]
    if (p.shape[0] != s.K or p.shape[1] != s.H or g.shape[0] != s.K or g.shape[1] != s.H
            or pb.shape[0] != s.K or pb.shape[1] != s.H or q.shape[0] != s.K or q.shape[1] != s.H):
        raise ValueError(f"arrays r, p, g, pb, q must all have shape ({s.K}, {s.H})")
    if s.K < 1 or s.H < 1:
        raise ValueError("the kernels need at least one client and one helper")
    s.r = &r[0, 0]
    s.p = &p[0, 0]
    s.g = &g[0, 0]
    s.pb = &pb[0, 0]
    s.q = &q[0, 0]
    s.w = NULL
    if w is not None:
        wv = w
        if wv.shape[0] != s.K or wv.shape[1] != s.H:
            raise ValueError(f"the release floor w must have shape ({s.K}, {s.H})")
        s.w = &wv[0, 0]
    return s


cdef inline double bwd_release(Inst* s, long ji, double fwd_end) noexcept nogil:
    """Release of a backward job whose forward job ended at fwd_end: fwd_end + g, at least the floor w."""
    cdef double rel = fwd_end + s.g[ji]
    if s.w != NULL and s.w[ji] > rel:
        rel = s.w[ji]
    return rel


cdef inline double chain_of(Inst* s, long ji) noexcept nogil:
    """The client's chain on its helper alone: r + p + g (at least w) + p' + q'."""
    return bwd_release(s, ji, s.r[ji] + s.p[ji]) + s.pb[ji] + s.q[ji]
