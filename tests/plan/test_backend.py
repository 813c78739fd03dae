"""Backend selection: the compiled core is active after install; EDGEPSL_PURE=1 forces the twin."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from edgepsl.plan.backend import backend_name


def test_compiled_core_is_active_unless_pure_is_forced() -> None:
    expected = "pure (EDGEPSL_PURE=1)" if os.environ.get("EDGEPSL_PURE", "") not in ("", "0") else "compiled"
    assert backend_name() == expected


def test_pure_env_variable_forces_the_twin() -> None:
    env = dict(os.environ, EDGEPSL_PURE="1")
    out = subprocess.run([sys.executable, "-m", "edgepsl", "--version"], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert "scheduling core: pure (EDGEPSL_PURE=1)" in out.stdout


def test_kernels_return_named_results_on_both_backends() -> None:
    from edgepsl import _core
    from edgepsl.plan import pure
    from edgepsl.plan.backend import JobOrder, JobTimes, Kernels, SearchResult, WindowBound, kernel_arrays

    from .instances import random_instance

    inst = random_instance(2, K=6, H=2, integer_times=True, tight_memory=False)
    arrays = kernel_arrays(inst)
    for got, want in ((arrays.r, inst.r), (arrays.p, inst.p), (arrays.g, inst.gap), (arrays.pb, inst.p_bwd),
                      (arrays.q, inst.tail)):
        np.testing.assert_array_equal(got, want)
    results = []
    for module in (_core, pure):
        k = Kernels(module)
        start = k.assign_balanced_greedy(inst.mem, inst.cap)
        order = k.dispatch(start, k.RULE_TAIL, *arrays)
        times = k.evaluate(start, *order, *arrays)
        search = k.local_search(start, *arrays, inst.mem, inst.cap, 0, 1000)
        window = k.window_bound(*arrays, inst.mem, inst.cap, inst.r.min(axis=1), inst.tail.min(axis=1))
        assert isinstance(order, JobOrder) and isinstance(times, JobTimes) and isinstance(search, SearchResult)
        assert isinstance(window, WindowBound) and window.value == window[0]
        assert times.finish.max() == times[4].max() and search.stats[4] == search[4][4]
        results.append((order.offsets, times.finish, search.assignment, window.value))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
