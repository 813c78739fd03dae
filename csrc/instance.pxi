# The five K x H arrays the kernels read, as raw row-major pointers (H is the row stride).
cdef struct Inst:
    const double* r
    const double* p
    const double* g
    const double* pb
    const double* q
    long K
    long H

cdef inline Inst make_inst(const double[:, ::1] r, const double[:, ::1] p, const double[:, ::1] g,
                           const double[:, ::1] pb, const double[:, ::1] q):
    cdef Inst s
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
    return s
