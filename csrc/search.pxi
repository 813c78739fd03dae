# Local search over assignment and job order (mirror of edgepsl/plan/pure/search.py; read its docstring).
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

# Relative slack of the load bounds that subtract a client's work: rounding must never prune a candidate
# the exact evaluation would accept.
DEF BOUND_SLACK = 1e-9
# Seed of the per-client and per-helper words of the span memo's set hashes (fixed, so a memo outlives a call).
DEF ZOBRIST_SEED = 0x5EED5EED

cdef struct Search:
    Inst* s
    const double* mem
    const double* cap
    long budget
    long work
    long long deadline_ns  # CLOCK_MONOTONIC nanoseconds; 0: no deadline
    bint timed_out
    Scratch sc
    long* tmp          # 2K: one rule's dispatch
    double* fwd_end    # K: scratch of c_span_of
    long* memo_jobs    # 2K: dispatch whose order is not kept
    uint64_t* memo_keys   # the memo of best-dispatch spans by (helper, client set); 0 marks an empty slot
    double* memo_spans
    uint64_t memo_mask
    uint64_t* zc       # K: random word per client; a set's hash is the XOR of its clients' words
    uint64_t* zh       # H: random word per helper, mixed into the key


cdef inline bint spent(Search* st) noexcept nogil:
    """True once the work budget is spent or the deadline has passed (the deadline sticks once seen)."""
    cdef timespec ts
    if st.work >= st.budget or st.timed_out:
        return True
    if st.deadline_ns > 0:
        clock_gettime(CLOCK_MONOTONIC, &ts)
        if <long long>ts.tv_sec * 1000000000 + ts.tv_nsec >= st.deadline_ns:
            st.timed_out = True
            return True
    return False


cdef inline double best_dispatch(Search* st, const long* clients, long n, long i, long* out) noexcept nogil:
    st.work += N_RULES * 2 * n
    return c_best_dispatch(st.s, clients, n, i, st.tmp, out, &st.sc)


cdef double set_span(Search* st, uint64_t h, const long* clients, long n, long i) noexcept nogil:
    """Best-dispatch span of clients[0:n] (set hash h) on helper i, from the memo when it holds it (1 work unit)."""
    cdef uint64_t key = h ^ st.zh[i]
    cdef uint64_t slot
    cdef double span
    if key == 0:
        key = 1
    slot = key & st.memo_mask
    if st.memo_keys[slot] == key:
        st.work += 1
        return st.memo_spans[slot]
    span = best_dispatch(st, clients, n, i, st.memo_jobs)
    st.memo_keys[slot] = key
    st.memo_spans[slot] = span
    return span


cdef inline void helper_stats(Search* st, const long* clients, long n, long i, double* out) noexcept nogil:
    """(total work p + p', smallest release, smallest tail) of clients[0:n] on helper i."""
    cdef Inst* s = st.s
    cdef double work = 0.0
    cdef double lo = 0.0
    cdef double hi = 0.0
    cdef long k, ji
    for k in range(n):
        ji = clients[k] * s.H + i
        work += s.p[ji] + s.pb[ji]
        if k == 0 or s.r[ji] < lo:
            lo = s.r[ji]
        if k == 0 or s.q[ji] < hi:
            hi = s.q[ji]
    out[0] = work
    out[1] = lo
    out[2] = hi


cdef inline double span_of(Search* st, const long* jobs, long m, long i) noexcept nogil:
    st.work += m
    return c_span_of(st.s, jobs, m, i, st.fwd_end)


cdef inline void totals(const double* span, long H, long a, double va, long b, double vb,
                        double* m_out, double* s_out) noexcept nogil:
    cdef double m = 0.0
    cdef double s = 0.0
    cdef double v
    cdef long i
    for i in range(H):
        v = span[i]
        if i == a:
            v = va
        elif i == b:
            v = vb
        if v > m:
            m = v
        s += v
    m_out[0] = m
    s_out[0] = s


cdef inline long remove_sorted(const long* src, long n, long x, long* dst) noexcept nogil:
    cdef long k, m = 0
    for k in range(n):
        if src[k] != x:
            dst[m] = src[k]
            m += 1
    return m


cdef inline long insert_sorted(long* buf, long n, long x) noexcept nogil:
    cdef long k = n
    while k > 0 and buf[k - 1] > x:
        buf[k] = buf[k - 1]
        k -= 1
    buf[k] = x
    return n + 1


cdef long c_local_search(Inst* s, const double* mem, const double* cap, long* assign, uint64_t seed,
                         long budget, long long deadline_ns, uint64_t* memo_keys, double* memo_spans,
                         long memo_size, long* seq_client, long* seq_kind, long* offsets,
                         long* stats, bint relief_swaps) noexcept nogil:
    """Returns 0, or -1 when memory could not be allocated."""
    cdef long K = s.K
    cdef long H = s.H
    cdef Search st
    cdef uint64_t state = seed
    cdef long i, j, k, c, t, pos, m, n_c, n_rest, n_kept, n_new, n_new_i, a, b, ji, kk
    cdef long iterations = 0, reorders = 0, moves = 0, swaps = 0
    cdef double M, S, m2, s2, sp, wo_span, d_span, in_span, c_span, i_span, t_span
    cdef bint improved, use_d
    cdef uint64_t zstate = ZOBRIST_SEED
    cdef long* wo_jobs
    cdef Entry e
    st.s = s
    st.mem = mem
    st.cap = cap
    st.budget = budget
    st.work = 0
    st.deadline_ns = deadline_ns
    st.timed_out = False
    st.memo_keys = memo_keys
    st.memo_spans = memo_spans
    st.memo_mask = <uint64_t>(memo_size - 1)
    st.memo_jobs = <long*>malloc(2 * K * sizeof(long))
    st.zc = <uint64_t*>malloc(K * sizeof(uint64_t))
    st.zh = <uint64_t*>malloc(H * sizeof(uint64_t))
    cdef uint64_t* hsh = <uint64_t*>malloc(H * sizeof(uint64_t))
    cdef long hcap = 2 * K + H + 1
    st.sc.h1.data = <Entry*>malloc(hcap * sizeof(Entry))
    st.sc.h2.data = <Entry*>malloc(hcap * sizeof(Entry))
    st.sc.h3.data = <Entry*>malloc(hcap * sizeof(Entry))
    st.tmp = <long*>malloc(2 * K * sizeof(long))
    st.fwd_end = <double*>malloc(K * sizeof(double))
    cdef long* members = <long*>malloc(H * K * sizeof(long))
    cdef long* mcount = <long*>malloc(H * sizeof(long))
    cdef long* seqs = <long*>malloc(H * 2 * K * sizeof(long))
    cdef double* span = <double*>malloc(H * sizeof(double))
    cdef double* used = <double*>malloc(H * sizeof(double))
    cdef long* rest = <long*>malloc(K * sizeof(long))
    cdef long* grown = <long*>malloc(K * sizeof(long))
    cdef long* order = <long*>malloc(K * sizeof(long))
    cdef long* perm = <long*>malloc(K * sizeof(long))
    cdef char* relief = <char*>malloc(K * sizeof(char))
    cdef long* kept = <long*>malloc(2 * K * sizeof(long))
    cdef long* djobs = <long*>malloc(2 * K * sizeof(long))
    cdef long* injobs = <long*>malloc(2 * K * sizeof(long))
    cdef long* targets = <long*>malloc(H * sizeof(long))
    cdef double* tspan = <double*>malloc(H * sizeof(double))
    cdef double* hstats = <double*>malloc(3 * H * sizeof(double))
    cdef double lo, hi
    cdef long rc = 0
    if (not st.sc.h1.data or not st.sc.h2.data or not st.sc.h3.data or not st.tmp or not st.fwd_end
            or not members or not mcount or not seqs or not span or not used or not rest or not grown
            or not order or not perm or not relief or not kept or not djobs or not injobs or not targets or not tspan
            or not hstats
            or not st.memo_jobs or not st.zc or not st.zh or not hsh):
        rc = -1
    else:
        for i in range(H):
            mcount[i] = 0
            used[i] = 0.0
        for j in range(K):
            i = assign[j]
            members[i * K + mcount[i]] = j
            mcount[i] += 1
        for j in range(K):
            used[assign[j]] += mem[j]
        for j in range(K):
            st.zc[j] = rng_next(&zstate)
        for i in range(H):
            st.zh[i] = rng_next(&zstate)
            hsh[i] = 0
        for j in range(K):
            hsh[assign[j]] ^= st.zc[j]
        for i in range(H):
            span[i] = best_dispatch(&st, &members[i * K], mcount[i], i, &seqs[i * 2 * K])
        for i in range(H):
            helper_stats(&st, &members[i * K], mcount[i], i, &hstats[3 * i])
        while not spent(&st):
            iterations += 1
            totals(span, H, -1, 0.0, -1, 0.0, &M, &S)
            c = 0
            while span[c] != M:
                c += 1
            improved = False
            # A. reorder the critical helper's jobs by adjacent swaps (in place, undone when rejected).
            m = 2 * mcount[c]
            for pos in range(m - 1):
                if spent(&st):
                    break
                a = seqs[c * 2 * K + pos]
                b = seqs[c * 2 * K + pos + 1]
                if (a >> 1) == (b >> 1):
                    continue
                seqs[c * 2 * K + pos] = b
                seqs[c * 2 * K + pos + 1] = a
                sp = span_of(&st, &seqs[c * 2 * K], m, c)
                totals(span, H, c, sp, -1, 0.0, &m2, &s2)
                if m2 < M or (m2 == M and s2 < S):
                    span[c] = sp
                    reorders += 1
                    improved = True
                    break
                seqs[c * 2 * K + pos] = a
                seqs[c * 2 * K + pos + 1] = b
            if improved:
                continue
            st.sc.h1.size = 0
            for i in range(H):
                if i != c:
                    heap_push(&st.sc.h1, span[i], <double>i, 0, i, 0)
            for t in range(H - 1):
                e = heap_pop(&st.sc.h1)
                targets[t] = e.a
                tspan[t] = e.k0
            n_c = mcount[c]
            rng_permutation(&state, perm, n_c)
            for k in range(n_c):
                order[k] = members[c * K + perm[k]]
                relief[k] = False
            # B. move a client off the critical helper.
            for kk in range(n_c):
                if spent(&st):
                    break
                j = order[kk]
                n_rest = remove_sorted(&members[c * K], n_c, j, rest)
                n_kept = 0
                for pos in range(2 * n_c):
                    if (seqs[c * 2 * K + pos] >> 1) != j:
                        kept[n_kept] = seqs[c * 2 * K + pos]
                        n_kept += 1
                wo_span = span_of(&st, kept, n_kept, c)
                d_span = set_span(&st, hsh[c] ^ st.zc[j], rest, n_rest, c)
                use_d = d_span < wo_span
                if use_d:
                    wo_span = d_span
                if not wo_span < span[c]:
                    continue
                relief[kk] = True
                for t in range(H - 1):
                    if spent(&st):
                        break
                    i = targets[t]
                    t_span = tspan[t]
                    if t_span >= M or used[i] + mem[j] > cap[i]:
                        continue
                    ji = j * H + i
                    if chain_of(s, ji) > M:
                        continue
                    if mcount[i] > 0:
                        lo = hstats[3 * i + 1] if hstats[3 * i + 1] <= s.r[ji] else s.r[ji]
                        hi = hstats[3 * i + 2] if hstats[3 * i + 2] <= s.q[ji] else s.q[ji]
                    else:
                        lo = s.r[ji]
                        hi = s.q[ji]
                    if lo + (hstats[3 * i] + (s.p[ji] + s.pb[ji])) + hi > M:
                        continue
                    memcpy(grown, &members[i * K], mcount[i] * sizeof(long))
                    n_new = insert_sorted(grown, mcount[i], j)
                    in_span = set_span(&st, hsh[i] ^ st.zc[j], grown, n_new, i)
                    if in_span > M:
                        continue
                    totals(span, H, c, wo_span, i, in_span, &m2, &s2)
                    if m2 < M or (m2 == M and s2 < S):
                        wo_jobs = kept
                        if use_d:
                            best_dispatch(&st, rest, n_rest, c, djobs)
                            wo_jobs = djobs
                        best_dispatch(&st, grown, n_new, i, injobs)
                        hsh[c] ^= st.zc[j]
                        hsh[i] ^= st.zc[j]
                        memcpy(&members[c * K], rest, n_rest * sizeof(long))
                        mcount[c] = n_rest
                        memcpy(&members[i * K], grown, n_new * sizeof(long))
                        mcount[i] = n_new
                        memcpy(&seqs[c * 2 * K], wo_jobs, 2 * n_rest * sizeof(long))
                        memcpy(&seqs[i * 2 * K], injobs, 2 * n_new * sizeof(long))
                        span[c] = wo_span
                        span[i] = in_span
                        used[c] -= mem[j]
                        used[i] += mem[j]
                        assign[j] = i
                        helper_stats(&st, rest, n_rest, c, &hstats[3 * c])
                        helper_stats(&st, grown, n_new, i, &hstats[3 * i])
                        moves += 1
                        improved = True
                        break
                if improved:
                    break
            if improved:
                continue
            # C. swap a client of the critical helper with a lighter or shorter-chained client elsewhere.
            for kk in range(n_c):
                if improved or spent(&st):
                    break
                if relief_swaps and not relief[kk]:
                    continue
                j = order[kk]
                for t in range(H - 1):
                    if improved or spent(&st):
                        break
                    i = targets[t]
                    t_span = tspan[t]
                    if t_span >= M:
                        continue
                    for pos in range(mcount[i]):
                        if spent(&st):
                            break
                        k = members[i * K + pos]
                        a = k * H + c
                        b = j * H + c
                        if not (s.p[a] + s.pb[a] < s.p[b] + s.pb[b]
                                or chain_of(s, a)
                                < chain_of(s, b)):
                            continue
                        if used[c] - mem[j] + mem[k] > cap[c] or used[i] - mem[k] + mem[j] > cap[i]:
                            continue
                        # Cheap bounds first: k's chain and the load bound of helper c with k for j must stay
                        # below c's span, j's chain and the load bound of helper i with j for k within M.
                        if chain_of(s, a) >= span[c]:
                            continue
                        lo = hstats[3 * c + 1] if hstats[3 * c + 1] <= s.r[a] else s.r[a]
                        hi = hstats[3 * c + 2] if hstats[3 * c + 2] <= s.q[a] else s.q[a]
                        lo = lo + ((hstats[3 * c] - (s.p[b] + s.pb[b])) + (s.p[a] + s.pb[a])) + hi
                        if lo * (1 - BOUND_SLACK) >= span[c]:
                            continue
                        a = j * H + i
                        b = k * H + i
                        if chain_of(s, a) > M:
                            continue
                        lo = hstats[3 * i + 1] if hstats[3 * i + 1] <= s.r[a] else s.r[a]
                        hi = hstats[3 * i + 2] if hstats[3 * i + 2] <= s.q[a] else s.q[a]
                        lo = lo + ((hstats[3 * i] - (s.p[b] + s.pb[b])) + (s.p[a] + s.pb[a])) + hi
                        if lo * (1 - BOUND_SLACK) > M:
                            continue
                        n_new = remove_sorted(&members[c * K], n_c, j, rest)
                        n_new = insert_sorted(rest, n_new, k)
                        c_span = set_span(&st, hsh[c] ^ st.zc[j] ^ st.zc[k], rest, n_new, c)
                        if not c_span < span[c]:
                            continue
                        n_new_i = remove_sorted(&members[i * K], mcount[i], k, grown)
                        n_new_i = insert_sorted(grown, n_new_i, j)
                        i_span = set_span(&st, hsh[i] ^ st.zc[k] ^ st.zc[j], grown, n_new_i, i)
                        if i_span > M:
                            continue
                        totals(span, H, c, c_span, i, i_span, &m2, &s2)
                        if m2 < M or (m2 == M and s2 < S):
                            best_dispatch(&st, rest, n_new, c, djobs)
                            best_dispatch(&st, grown, n_new_i, i, injobs)
                            hsh[c] ^= st.zc[j] ^ st.zc[k]
                            hsh[i] ^= st.zc[j] ^ st.zc[k]
                            memcpy(&members[c * K], rest, n_new * sizeof(long))
                            memcpy(&members[i * K], grown, n_new_i * sizeof(long))
                            memcpy(&seqs[c * 2 * K], djobs, 2 * n_new * sizeof(long))
                            memcpy(&seqs[i * 2 * K], injobs, 2 * n_new_i * sizeof(long))
                            span[c] = c_span
                            span[i] = i_span
                            used[c] += mem[k] - mem[j]
                            used[i] += mem[j] - mem[k]
                            assign[j] = i
                            assign[k] = c
                            helper_stats(&st, rest, n_new, c, &hstats[3 * c])
                            helper_stats(&st, grown, n_new_i, i, &hstats[3 * i])
                            swaps += 1
                            improved = True
                            break
            if not improved:
                break
        pos = 0
        offsets[0] = 0
        for i in range(H):
            for k in range(2 * mcount[i]):
                seq_client[pos] = seqs[i * 2 * K + k] >> 1
                seq_kind[pos] = seqs[i * 2 * K + k] & 1
                pos += 1
            offsets[i + 1] = pos
        stats[0] = iterations
        stats[1] = reorders
        stats[2] = moves
        stats[3] = swaps
        stats[4] = st.work
        stats[5] = st.timed_out
    free(st.sc.h1.data); free(st.sc.h2.data); free(st.sc.h3.data); free(st.tmp); free(st.fwd_end)
    free(members); free(mcount); free(seqs); free(span); free(used); free(rest); free(grown)
    free(order); free(perm); free(relief); free(kept); free(djobs); free(injobs); free(targets); free(tspan)
    free(hstats)
    free(st.memo_jobs); free(st.zc); free(st.zh); free(hsh)
    return rc
