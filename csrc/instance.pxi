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
    for name, arr in (("p", p), ("g", g), ("pb", pb), ("q", q)):
        if arr.shape[0] != s.K or arr.shape[1] != s.H:
            raise ValueError(f"array {name} has shape ({arr.shape[0]}, {arr.shape[1]}), expected ({s.K}, {s.H})")
    s.r = &r[0, 0]
    s.p = &p[0, 0]
    s.g = &g[0, 0]
    s.pb = &pb[0, 0]
    s.q = &q[0, 0]
    return s
