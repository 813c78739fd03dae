# SplitMix64 (mirror of edgepsl/plan/pure/rng.py).
from libc.stdint cimport uint64_t

cdef inline uint64_t rng_next(uint64_t* state) noexcept nogil:
    state[0] += <uint64_t>0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)

cdef inline long rng_below(uint64_t* state, long n) noexcept nogil:
    cdef uint64_t un = <uint64_t>n
    cdef uint64_t threshold = (<uint64_t>0 - un) % un
    cdef uint64_t x
    while True:
        x = rng_next(state)
        if x >= threshold:
            return <long>(x % un)

cdef inline void rng_permutation(uint64_t* state, long* out, long n) noexcept nogil:
    cdef long i, k, t
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        k = rng_below(state, i + 1)
        t = out[i]
        out[i] = out[k]
        out[k] = t
