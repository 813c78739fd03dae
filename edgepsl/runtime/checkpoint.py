"""The coordinator's checkpoint: averaged model, every client's and middle part's optimizer state, the round."""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from edgepsl.runtime.errors import ResumeError

STATE_FILE, META_FILE = "state.npz", "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    """After `round` (complete, averaged): `model` holds part1/part2/part3 model tensors, `optim[name]` each
    client's part1/part3 optimizer tensors and `optim[client + '@part2']` its middle part's on the helper."""

    round: int
    model: dict[str, np.ndarray]
    optim: dict[str, dict[str, np.ndarray]]


def save(directory: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Write the checkpoint atomically (the state file first, then the metadata that names it complete)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"model|" + k: v for k, v in ckpt.model.items()}
    for owner, tensors in ckpt.optim.items():
        arrays.update({f"optim|{owner}|{k}": v for k, v in tensors.items()})
    tmp = root / (STATE_FILE + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, root / STATE_FILE)
    (root / (META_FILE + ".tmp")).write_text(json.dumps({"round": ckpt.round, "owners": sorted(ckpt.optim)}))
    os.replace(root / (META_FILE + ".tmp"), root / META_FILE)


def resumed_round(run_dir: str | os.PathLike[str]) -> int:
    """The round of a run directory's checkpoint (read from its metadata only); ResumeError without one."""
    path = Path(run_dir) / "checkpoint" / META_FILE
    try:
        return int(json.loads(path.read_text())["round"])
    except (OSError, ValueError, KeyError) as exc:
        raise ResumeError(f"no checkpoint to resume in {run_dir} ({exc}); a run can resume once it has averaged") from None


def load(directory: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint; ResumeError naming what is missing."""
    root = Path(directory)
    try:
        info = json.loads((root / META_FILE).read_text())
        with np.load(root / STATE_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ResumeError(f"no usable checkpoint in {root} ({exc}); resume needs a run that completed an "
                          "averaging round") from None
    model = {k[len("model|"):]: v for k, v in arrays.items() if k.startswith("model|")}
    optim: dict[str, dict[str, np.ndarray]] = {owner: {} for owner in info["owners"]}
    for key, value in arrays.items():
        if key.startswith("optim|"):
            _, owner, name = key.split("|", 2)
            optim[owner][name] = value
    return Checkpoint(int(info["round"]), model, optim)


def select(tensors: Mapping[str, np.ndarray], prefixes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The tensors whose names start with one of the prefixes."""
    return {k: v for k, v in tensors.items() if k.startswith(prefixes)}
