# Preemptive Jackson schedule on one helper with blocked intervals (mirror of edgepsl/plan/pure/jackson.py).

cdef long c_jackson(const double* release, const double* proc, const double* tail, long n,
                    const double* bstart, const double* bend, long nb, double* completion, double* objective,
                    long* pjob, double* pstart, double* pend, Heap* pending, Heap* ready,
                    double* remaining) noexcept nogil:
    """Fills completion and the pieces; returns the number of pieces."""
    cdef long j, blk = 0, done = 0, npieces = 0
    cdef double t = 0.0
    cdef double obj = 0.0
    cdef double stop
    cdef bint cut
    cdef Entry e
    pending.size = 0
    ready.size = 0
    for j in range(n):
        heap_push(pending, release[j], <double>j, 0, j, 0)
        remaining[j] = proc[j]
        completion[j] = 0.0
    while done < n:
        while pending.size > 0 and pending.data[0].k0 <= t:
            e = heap_pop(pending)
            j = e.a
            if remaining[j] > 0:
                heap_push(ready, -tail[j], <double>j, 0, j, 0)
            else:
                completion[j] = e.k0
                if completion[j] + tail[j] > obj:
                    obj = completion[j] + tail[j]
                done += 1
        while blk < nb and bend[blk] <= t:
            blk += 1
        if blk < nb and bstart[blk] <= t:
            t = bend[blk]
            continue
        if ready.size == 0:
            if pending.size > 0:
                t = pending.data[0].k0
            continue
        j = ready.data[0].a
        stop = t + remaining[j]
        cut = False
        if pending.size > 0 and pending.data[0].k0 < stop:
            stop = pending.data[0].k0
            cut = True
        if blk < nb and bstart[blk] < stop:
            stop = bstart[blk]
            cut = True
        pjob[npieces] = j
        pstart[npieces] = t
        pend[npieces] = stop
        npieces += 1
        if cut:
            remaining[j] = remaining[j] - (stop - t)
        else:
            remaining[j] = 0.0
        t = stop
        if remaining[j] <= 0.0:
            heap_pop(ready)
            completion[j] = t
            if t + tail[j] > obj:
                obj = t + tail[j]
            done += 1
    objective[0] = obj
    return npieces
