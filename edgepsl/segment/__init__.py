"""One model segment on onnxruntime: artifact loading, forward, backward, train step, evaluation, optimizers."""
from edgepsl.segment.checkpoint import load_checkpoint, save_checkpoint
from edgepsl.segment.errors import (ArtifactError, SegmentError, SegmentInputError, SegmentRoleError, StateError,
                                    UnknownJobError)
from edgepsl.segment.manifest import Manifest, load_manifest
from edgepsl.segment.optim import SGD, Adam, Optimizer
from edgepsl.segment.segment import BackwardResult, Segment, TrainResult
from edgepsl.segment.session import available_providers

__all__ = ["Adam", "ArtifactError", "BackwardResult", "Manifest", "Optimizer", "SGD", "Segment", "SegmentError",
           "SegmentInputError", "SegmentRoleError", "StateError", "TrainResult", "UnknownJobError",
           "available_providers", "load_checkpoint", "load_manifest", "save_checkpoint"]
