"""Save and restore a segment's parameters, buffers and optimizer state as one .npz (no pickle)."""
from __future__ import annotations

import os
import zipfile

import numpy as np

from edgepsl.segment.errors import StateError
from edgepsl.segment.optim import Optimizer
from edgepsl.segment.segment import Segment

_SEGMENT, _OPTIMIZER = "segment/", "optimizer/"


def save_checkpoint(path: str | os.PathLike[str], segment: Segment, optimizer: Optimizer | None = None) -> None:
    """Write the segment state (and the optimizer state) to `path`, replacing it atomically."""
    arrays = {"meta/segment": np.array(segment.name), "meta/model": np.array(segment.manifest.model),
              "meta/optimizer": np.array(optimizer.kind if optimizer else "")}
    arrays.update({_SEGMENT + k: v for k, v in segment.get_state().items()})
    if optimizer:
        arrays.update({_OPTIMIZER + k: v for k, v in optimizer.state_dict().items()})
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str], segment: Segment, optimizer: Optimizer | None = None) -> None:
    """Restore a checkpoint into the segment (and optimizer); StateError and no change if it does not match."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise StateError(f"{path} is not a readable checkpoint: {exc}") from exc
    meta = {k: str(arrays.get(f"meta/{k}", "")) for k in ("segment", "model", "optimizer")}
    if meta["segment"] != segment.name or meta["model"] != segment.manifest.model:
        raise StateError(f"{path} holds {meta['model']!r} segment {meta['segment']!r}, not "
                         f"{segment.manifest.model!r} segment {segment.name!r}")
    wanted = optimizer.kind if optimizer else ""
    if optimizer and meta["optimizer"] != wanted:
        raise StateError(f"{path} holds {meta['optimizer'] or 'no'} optimizer state, not {wanted}")
    state = {k[len(_SEGMENT):]: v for k, v in arrays.items() if k.startswith(_SEGMENT)}
    previous = segment.get_state()
    segment.set_state(state)
    if optimizer:
        try:
            optimizer.load_state_dict({k[len(_OPTIMIZER):]: v for k, v in arrays.items() if k.startswith(_OPTIMIZER)})
        except StateError:
            segment.set_state(previous)
            raise
