"""Random instances for kernel tests: continuous or integer-valued times (to provoke ties), loose or tight memory."""
from __future__ import annotations

import dataclasses

import numpy as np

from edgepsl.plan.backend import kernel_arrays  # noqa: F401  (the kernel tests take the arrays from here)
from edgepsl.plan.instance import Instance


def random_instance(seed: int, K: int, H: int, integer_times: bool, tight_memory: bool) -> Instance:
    """A valid instance drawn from a seed; integer times create the exact ties dispatch rules must break alike."""
    rng = np.random.default_rng(seed)

    def times(shape, hi):
        return rng.integers(0, hi, shape).astype(float) if integer_times else rng.uniform(0, hi, shape)

    mem = rng.integers(1, 4, K).astype(float)
    if tight_memory:
        cap = np.maximum(np.floor(rng.dirichlet(np.ones(H)) * 1.5 * mem.sum()), mem.max())
    else:
        cap = np.full(H, float(mem.sum()))
    return Instance(
        r=times((K, H), 20), p=times((K, H), 10), d=times((K, H), 5), l=times(K, 10),
        r_bwd=times((K, H), 20), p_bwd=times((K, H), 10), d_bwd=times((K, H), 5), l_bwd=times(K, 10),
        mem=mem, cap=cap,
    )


def with_random_modes(inst: Instance, seed: int, integer_times: bool) -> Instance:
    """The instance with local-loss fields: a random mode per client, r_cpu within min_i r_ij and local work long
    enough that the release floor binds on some clients."""
    rng = np.random.default_rng(seed)
    low = inst.r.min(axis=1)
    r_cpu = np.floor(low * rng.uniform(0, 1, inst.K)) if integer_times else low * rng.uniform(0, 1, inst.K)
    aux = rng.integers(0, 40, inst.K).astype(float) if integer_times else rng.uniform(0, 40, inst.K)
    modes = rng.integers(0, 2, inst.K).astype(float)
    return dataclasses.replace(inst, local_loss=modes, r_cpu=r_cpu, aux=aux)


def assert_same(a, b) -> None:
    """Kernel results equal exactly: arrays, or (nested) tuples of them."""
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
