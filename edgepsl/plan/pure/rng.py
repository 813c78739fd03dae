"""SplitMix64: a tiny seeded generator both backends implement bit for bit (mirrored in csrc/rng.pxi)."""

_MASK = (1 << 64) - 1


class SplitMix64:
    """Deterministic 64-bit generator; below(n) draws an unbiased integer in [0, n)."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def next(self) -> int:
        """The next 64-bit output."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """An unbiased integer in [0, n) by rejection sampling."""
        threshold = ((1 << 64) - n) % n
        while True:
            x = self.next()
            if x >= threshold:
                return x % n

    def permutation(self, n: int) -> list[int]:
        """A Fisher-Yates shuffle of range(n)."""
        order = list(range(n))
        for i in range(n - 1, 0, -1):
            k = self.below(i + 1)
            order[i], order[k] = order[k], order[i]
        return order
