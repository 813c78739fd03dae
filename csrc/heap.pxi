# A binary min-heap of entries ordered lexicographically by (k0, k1, k2); keys are unique where used,
# so the pop order equals Python's heapq over the same tuples.
from libc.stdlib cimport malloc, free

cdef struct Entry:
    double k0
    double k1
    long k2
    long a
    long b

cdef struct Heap:
    Entry* data
    long size

cdef inline bint entry_less(Entry* x, Entry* y) noexcept nogil:
    if x.k0 != y.k0:
        return x.k0 < y.k0
    if x.k1 != y.k1:
        return x.k1 < y.k1
    return x.k2 < y.k2

cdef inline void heap_push(Heap* h, double k0, double k1, long k2, long a, long b) noexcept nogil:
    cdef long pos = h.size
    cdef long parent
    cdef Entry e
    e.k0 = k0
    e.k1 = k1
    e.k2 = k2
    e.a = a
    e.b = b
    h.size += 1
    while pos > 0:
        parent = (pos - 1) >> 1
        if entry_less(&e, &h.data[parent]):
            h.data[pos] = h.data[parent]
            pos = parent
        else:
            break
    h.data[pos] = e

cdef inline Entry heap_pop(Heap* h) noexcept nogil:
    cdef Entry top = h.data[0]
    cdef Entry last
    cdef long pos = 0
    cdef long child
    h.size -= 1
    if h.size > 0:
        last = h.data[h.size]
        while True:
            child = 2 * pos + 1
            if child >= h.size:
                break
            if child + 1 < h.size and entry_less(&h.data[child + 1], &h.data[child]):
                child += 1
            if entry_less(&h.data[child], &last):
                h.data[pos] = h.data[child]
                pos = child
            else:
                break
        h.data[pos] = last
    return top
