"""The aarch64 client checks that tools/check_aarch64.sh runs inside the emulated arm64 root filesystem.

usage: python -P client_checks.py core
       python -P client_checks.py segments ARTIFACT [--expect REFERENCE.json] [--write REFERENCE.json]

core:     this is aarch64, the installed edgepsl (not a source tree) uses its compiled core, the extension is an
          aarch64 ELF file, and the core agrees exactly with the pure-Python twin (dispatch under every rule,
          evaluate, local_search) on a few small instances; the wire codec's compiled fast path is active
          (edgepsl.wire.backend), its extension is an aarch64 ELF file too, and it agrees with the reference codec
          on a FORWARD with a float32 tensor, a header-only REPORT with meta, and a malformed header.
segments: one training step of the LeNet segments (part-1 forward, part-2 forward, part-3 train step, part-2
          and part-1 backward, SGD); the loss falls after the step. --write saves the losses (run natively on
          the host), --expect compares with them (float32 tolerance).
Run with `python -P` from outside the source tree so that the installed package, not ./edgepsl, is imported.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

EM_AARCH64 = 183
BATCH = 8


def check_machine() -> None:
    """Fail unless this interpreter runs as aarch64."""
    assert platform.machine() == "aarch64", f"machine is {platform.machine()}, not aarch64"


def check_aarch64_elf(path: str) -> None:
    """Fail unless the file at `path` is an aarch64 ELF shared object."""
    header = Path(path).read_bytes()[:20]
    machine = int.from_bytes(header[18:20], "little")
    assert header[:4] == b"\x7fELF" and machine == EM_AARCH64, f"{path} is not an aarch64 ELF file"


def check_compiled_backend() -> None:
    """The installed edgepsl imports its compiled core, and the core is an aarch64 shared object."""
    import edgepsl
    from edgepsl import _core
    from edgepsl.plan.backend import backend_name

    assert "site-packages" in edgepsl.__file__, f"edgepsl imported from {edgepsl.__file__}, not an installation"
    assert backend_name() == "compiled", f"active backend is {backend_name()!r}"
    check_aarch64_elf(_core.__file__)
    print(f"core: edgepsl {edgepsl.__version__} at {Path(edgepsl.__file__).parent}, backend compiled, "
          f"{Path(_core.__file__).name} is aarch64 ELF")


def tie_instance(seed: int, K: int, H: int):
    """An instance with integer times (exact ties the dispatch rules must break alike) and tight memory."""
    from edgepsl.plan.instance import Instance

    rng = np.random.default_rng(seed)

    def times(shape, hi):
        return rng.integers(0, hi, shape).astype(float)

    mem = rng.integers(1, 4, K).astype(float)
    cap = np.maximum(np.floor(rng.dirichlet(np.ones(H)) * 1.5 * mem.sum()), mem.max())
    return Instance(r=times((K, H), 20), p=times((K, H), 10), d=times((K, H), 5), l=times(K, 10),
                    r_bwd=times((K, H), 20), p_bwd=times((K, H), 10), d_bwd=times((K, H), 5), l_bwd=times(K, 10),
                    mem=mem, cap=cap)


def small_instances() -> list[tuple[str, object]]:
    """Two paper scenarios (measured profiles, sampled heterogeneity) and one instance full of ties."""
    from edgepsl.plan.scenarios import scenario_instance

    return [("resnet101_cifar10 scenario 1, K=8 H=2", scenario_instance("resnet101_cifar10", 8, 2, 1, seed=0)),
            ("vgg19_mnist scenario 2, K=10 H=3", scenario_instance("vgg19_mnist", 10, 3, 2, seed=1)),
            ("integer-time ties, K=9 H=3", tie_instance(7, 9, 3))]


def assert_same(a, b, what: str) -> None:
    """Exact equality of kernel outputs (tuples of arrays or scalars)."""
    if isinstance(a, tuple):
        assert len(a) == len(b), what
        for x, y in zip(a, b):
            assert_same(x, y, what)
    else:
        assert np.array_equal(np.asarray(a), np.asarray(b)), f"compiled and pure differ: {what}"


def check_parity() -> None:
    """Compiled core == pure twin for dispatch (every rule), evaluate and local_search on small instances."""
    from edgepsl import _core as core
    from edgepsl.plan import pure
    from edgepsl.plan.backend import kernel_arrays

    for label, inst in small_instances():
        arrs = kernel_arrays(inst)
        start = pure.assign_balanced_greedy(inst.mem, inst.cap)
        assert (start >= 0).all(), f"{label}: no feasible start"
        for rule in pure.RULES:
            flat_c, flat_p = core.dispatch(start, rule, *arrs), pure.dispatch(start, rule, *arrs)
            assert_same(flat_c, flat_p, f"{label}: dispatch rule {rule}")
            assert_same(core.evaluate(start, *flat_c, *arrs), pure.evaluate(start, *flat_p, *arrs),
                        f"{label}: evaluate rule {rule}")
        searched = core.local_search(start, *arrs, inst.mem, inst.cap, 3, 300)
        assert_same(searched, pure.local_search(start, *arrs, inst.mem, inst.cap, 3, 300), f"{label}: local_search")
        print(f"parity: {label}: dispatch x{len(pure.RULES)} rules, evaluate, local_search agree exactly")


def check_wire_backend() -> None:
    """The installed wire codec uses its compiled fast path, and that extension is an aarch64 shared object."""
    from edgepsl.wire import _codec, backend

    assert backend.backend_name() == "compiled", f"active wire codec is {backend.backend_name()!r}"
    assert backend.encode is _codec.encode and backend.decode is _codec.decode, "edgepsl.wire.backend is not _codec"
    assert "site-packages" in _codec.__file__, f"edgepsl.wire._codec imported from {_codec.__file__}"
    check_aarch64_elf(_codec.__file__)
    print(f"wire: codec backend compiled, {Path(_codec.__file__).name} is aarch64 ELF")


def same_arrays(a, b) -> bool:
    """Same dtype as the wire spells it, shape and bytes."""
    return a.dtype.str == b.dtype.str and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_wire_parity() -> None:
    """The fast path takes a FORWARD and a REPORT and builds exactly the reference's frames and messages; a malformed
    header is declined by it, and _codec.decode raises the reference's ProtocolError (code, reason, job)."""
    import msgpack

    from edgepsl.wire import _codec, codec
    from edgepsl.wire.errors import ProtocolError
    from edgepsl.wire.messages import ErrorCode, JobId, Message, MsgType
    from edgepsl.wire.validate import Limits

    limits = Limits()
    sent = 1_700_000_000_123_456_789  # fixed, so the headers are byte-identical
    messages = [
        ("forward, float32 [2, 3, 4]", Message(MsgType.FORWARD, JobId("arm", 1, "client0", 7),
                                              {"act": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4)},
                                              {"microbatch": 0, "batch": 2}, sent)),
        ("report, header only", Message(MsgType.REPORT, JobId("arm", 1, "client0", 8),
                                        meta={"loss": 0.25, "bytes": 4096, "timings_ms": [1.5, 2.0], "ok": True},
                                        sent_ns=sent)),
    ]
    for label, message in messages:
        fast, reference = _codec.encode_fast(message, False), codec.encode(message)
        assert fast is not None, f"wire: encode_fast declined the {label}"
        assert fast[0] == reference[0], f"wire: encode_fast's header differs from the reference's ({label})"
        assert len(fast) == len(reference) and all(map(same_arrays, fast[1:], reference[1:])), f"wire: frames differ ({label})"
        frames = [bytes(memoryview(f)) for f in reference]
        got, want = _codec.decode_fast(frames, limits), codec.decode(frames, limits)
        assert got is not None, f"wire: decode_fast declined the {label}"
        assert (got.type, got.job, got.meta, got.sent_ns) == (want.type, want.job, want.meta, want.sent_ns) == \
            (message.type, message.job, message.meta, message.sent_ns), f"wire: decoded {label} differs"
        assert list(got.tensors) == list(want.tensors) == list(message.tensors), f"wire: tensor names differ ({label})"
        assert all(same_arrays(got.tensors[n], want.tensors[n]) and same_arrays(got.tensors[n], message.tensors[n])
                   for n in want.tensors), f"wire: decoded tensors differ ({label})"
        print(f"wire parity: {label}: encode_fast and decode_fast agree with the reference codec")
    header = msgpack.packb({"v": 1, "type": "forward", "run": "arm", "round": 1, "client": "client0", "seq": 9, "sent_ns": sent,
                            "tensors": [{"name": "act", "dtype": "<f4", "shape": [2, -2]}], "meta": {}})
    bad = [header, bytes(16)]
    assert _codec.decode_fast(bad, limits) is None, "wire: decode_fast accepted a negative dimension"
    refusals = []
    for decode in (codec.decode, _codec.decode):
        try:
            decode(bad, limits)
        except ProtocolError as exc:
            refusals.append((exc.code, exc.reason, exc.job))
        else:
            raise AssertionError(f"wire: {decode.__module__}.decode accepted a negative dimension")
    assert refusals[0] == refusals[1], f"wire: the codecs refuse differently: {refusals}"
    assert refusals[0][0] == ErrorCode.BAD_TENSOR and refusals[0][2] == JobId("arm", 1, "client0", 9), refusals[0]
    print(f"wire parity: malformed header (negative dimension): both codecs raise ProtocolError {refusals[0][0]}")


def training_step(artifact: str) -> dict[str, float]:
    """One split training step on a fixed batch; the losses before and after the SGD update."""
    from edgepsl.segment import SGD, Segment

    parts = [Segment(artifact, name, threads=1) for name in ("part1", "part2", "part3")]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, BATCH).astype(np.int64)
    optimizers = [SGD(part.params, lr=0.05) for part in parts]
    a = parts[0].forward("job", x)
    b = parts[1].forward("job", a)
    result = parts[2].train_step(b, labels)
    back2 = parts[1].backward("job", result.grad_in)
    back1 = parts[0].backward("job", back2.grad_in)
    for optimizer, grads in zip(optimizers, (back1.grads, back2.grads, result.grads)):
        assert all(np.isfinite(g).all() for g in grads.values()), "non-finite gradient"
        optimizer.step(grads)
    after = parts[2].evaluate(parts[1].evaluate(parts[0].evaluate(x)))
    shifted = after - after.max(axis=1, keepdims=True)
    loss_after = float(np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(BATCH), labels]))
    return {"loss": result.loss, "loss_after": loss_after}


def check_segments(artifact: str, expect: Path | None, write: Path | None) -> None:
    """Run the training step; the loss falls, and matches the host's losses when a reference is given."""
    losses = training_step(artifact)
    assert np.isfinite(list(losses.values())).all(), losses
    assert losses["loss_after"] < losses["loss"], f"the SGD step did not lower the loss: {losses}"
    if write:
        write.write_text(json.dumps(losses))
    if expect:
        reference = json.loads(expect.read_text())
        for key, value in reference.items():
            assert abs(losses[key] - value) <= 1e-4 * max(1.0, abs(value)), f"{key}: {losses[key]} here, {value} on host"
    where = "matches the host" if expect else "reference"
    print(f"segments: forward + backward + SGD step on {platform.machine()}: loss {losses['loss']:.6f} -> "
          f"{losses['loss_after']:.6f} ({where})")


def main(argv: list[str]) -> int:
    """Dispatch to the requested check set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="check", required=True)
    sub.add_parser("core")
    seg = sub.add_parser("segments")
    seg.add_argument("artifact")
    seg.add_argument("--expect", type=Path)
    seg.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    if args.check == "core":
        check_machine()
        check_compiled_backend()
        check_parity()
        check_wire_backend()
        check_wire_parity()
    else:
        check_segments(args.artifact, args.expect, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
