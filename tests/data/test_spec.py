"""Data specs on real files: npz shares written for each client equal the demo's in-process partition, idx and
python specs read the same data, and wrong shapes, dtypes and labels get specific errors naming the file."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.data.idx import FASHION_MNIST_DIR, load_fashion_mnist
from edgepsl.data.shares import save_npz, write_fashion_mnist_shares
from edgepsl.data.spec import (FASHION_MNIST, DataConfig, DataShapeError, DataSpecError, Normalisation,
                               load_client_data, load_test_data, read_arrays)
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime import dataset
from edgepsl.segment import load_manifest

TRAIN, BATCH = 600, 16


@pytest.fixture(scope="module")
def manifest():
    """The default LeNet-5 artifact's manifest (input 1x28x28, 10 classes, cross-entropy)."""
    return load_manifest(RunConfig().artifact)


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_npz_shares_equal_the_demo_partition(tmp_path, manifest, kind):
    config = RunConfig(clients=3, partition=kind, alpha=0.5, seed=4, train_samples=TRAIN, batch_size=BATCH)
    paths = write_fashion_mnist_shares(tmp_path, 3, kind, seed=4, alpha=0.5, train_samples=TRAIN, min_size=BATCH)
    assert [p.name for p in paths] == ["client0.npz", "client1.npz", "client2.npz"]
    for j, path in enumerate(paths):
        ours = load_client_data(f"npz:{path}", manifest, FASHION_MNIST, index=j, seed=4, batch_size=BATCH)
        demo = dataset.client_data(config, j)
        assert np.array_equal(ours.x, demo.x) and np.array_equal(ours.y, demo.y)
        assert ours.x.dtype == np.float32 and ours.y.dtype == np.int64 and ours.x.shape[1:] == (1, 28, 28)
        for r in (0, 7):
            assert all(np.array_equal(a, b) for a, b in zip(ours.batch(r), demo.batch(r)))
    assert sum(np.load(p)["y"].size for p in paths) == TRAIN


def test_idx_and_python_specs_read_the_same_data(tmp_path, manifest):
    x, y = load_test_data(f"idx:{FASHION_MNIST_DIR}", manifest, FASHION_MNIST, limit=200)
    test_x, test_y = load_fashion_mnist("t10k")
    assert np.array_equal(x, dataset.normalise(test_x[:200])) and np.array_equal(y, test_y[:200])
    module = tmp_path / "my_data.py"
    module.write_text("from edgepsl.data.idx import load_fashion_mnist\n\n"
                      "def test_split():\n    x, y = load_fashion_mnist('t10k')\n    return x[:200], y[:200]\n")
    x2, y2 = load_test_data(f"python:{module}:test_split", manifest, FASHION_MNIST)
    assert np.array_equal(x2, x) and np.array_equal(y2, y)


def _write(tmp_path, name: str, x: np.ndarray, y: np.ndarray) -> str:
    """An npz spec for arrays written to tmp_path/name."""
    path = tmp_path / name
    save_npz(path, x, y)
    return f"npz:{path}"


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((20, 3, 28, 28), np.uint8), np.zeros(20, np.int64), "x has shape 20x3x28x28, but the artifact"),
    (np.zeros((20, 32, 32), np.uint8), np.zeros(20, np.int64), "takes inputs of shape Bx1x28x28"),
    (np.zeros((20, 28, 28), np.uint8), np.zeros(20, np.float32), "needs one integer class index per sample"),
    (np.zeros((20, 28, 28), np.uint8), np.full(20, 10, np.int64), "the model has 10 classes"),
    (np.zeros((20, 28, 28), np.uint8), np.zeros(19, np.int64), "20 inputs but 19 labels"),
    (np.zeros((20, 28, 28), np.complex64), np.zeros(20, np.int64), "inputs must be real numbers"),
])
def test_wrong_shapes_and_labels_name_the_file_and_the_mismatch(tmp_path, manifest, x, y, message):
    spec = _write(tmp_path, "bad.npz", x, y)
    with pytest.raises(DataShapeError, match=message) as info:
        load_client_data(spec, manifest, FASHION_MNIST, index=0, seed=0, batch_size=4)
    assert str(tmp_path / "bad.npz") in str(info.value)


def test_a_share_smaller_than_a_batch_is_refused(tmp_path, manifest):
    spec = _write(tmp_path, "tiny.npz", np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.int64))
    with pytest.raises(DataShapeError, match="client 2 holds 3 samples, fewer than one batch of 4"):
        load_client_data(spec, manifest, FASHION_MNIST, index=2, seed=0, batch_size=4)


def test_bad_specs_and_files_get_specific_errors(tmp_path, manifest):
    with pytest.raises(DataSpecError, match="must be npz:FILE, idx:DIR or python:MODULE:FUNCTION"):
        read_arrays("csv:/data.csv")
    with pytest.raises(DataSpecError, match="does not exist"):
        read_arrays(f"npz:{tmp_path / 'none.npz'}")
    np.savez(tmp_path / "noy.npz", x=np.zeros(3))
    with pytest.raises(DataSpecError, match=r"lacks array\(s\) \['y'\]"):
        read_arrays(f"npz:{tmp_path / 'noy.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataSpecError, match="not a readable .npz"):
        read_arrays(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DataSpecError, match="train-images"):
        read_arrays(f"idx:{tmp_path}")
    module = tmp_path / "broken.py"
    module.write_text("def one():\n    return 1\n\ndef boom():\n    raise RuntimeError('disk gone')\n")
    with pytest.raises(DataSpecError, match="must return a tuple"):
        read_arrays(f"python:{module}:one")
    with pytest.raises(DataSpecError, match="RuntimeError: disk gone"):
        read_arrays(f"python:{module}:boom")


def test_per_channel_normalisation_and_data_config(tmp_path):
    norm = Normalisation.from_lists([0.5, 0.25, 0.0], [0.5, 0.25, 2.0], divide=255)
    x = np.full((2, 3, 4, 4), 255, np.uint8)
    out = norm.apply(x, "three channels")
    assert out.dtype == np.float32 and np.allclose(out[:, 0], 1.0) and np.allclose(out[:, 1], 3.0)
    assert np.allclose(out[:, 2], 0.5)
    with pytest.raises(DataShapeError, match="normalisation has 3 channels"):
        norm.apply(np.zeros((2, 1, 4, 4)), "one channel")
    with pytest.raises(DataSpecError, match="as many means as standard deviations"):
        Normalisation.from_lists([0.1, 0.2], [1.0])
    with pytest.raises(DataSpecError, match="must be > 0"):
        Normalisation.from_lists([0.1], [0.0])
    path = tmp_path / "data.toml"
    path.write_text('data = "npz:/home/me/share.npz"\ndivide = 255\nmean = [0.2860]\nstd = [0.3530]\n')
    config = DataConfig.load(path)
    assert config.data == "npz:/home/me/share.npz" and config.normalisation == FASHION_MNIST
    with pytest.raises(DataSpecError, match=r"unknown keys: \['scale'\]"):
        DataConfig.from_dict({"data": "npz:a.npz", "scale": 2})
    with pytest.raises(DataSpecError, match="lists of numbers"):
        DataConfig.from_dict({"data": "npz:a.npz", "mean": 0.5})
