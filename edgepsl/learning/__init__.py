"""Learning modes beyond U-shaped SplitFed, as building blocks for the runtime (numpy + onnxruntime only):
local-loss training of part-1 through an aux head (LocSplitFed, LocFedMix-SL), the two-part split with labels on the
helper, and SmashMix (mixup of smashed data across clients). docs/modes.md describes each and how roles call them."""
from edgepsl.learning.errors import LearningError, SmashMixError
from edgepsl.learning.local_loss import LocalLoss, LocalLossResult
from edgepsl.learning.smashmix import MixedBatch, SmashMix, mixed_train_step
from edgepsl.learning.two_part import TwoPartResult, two_part_mixed_step, two_part_step

__all__ = ["LearningError", "LocalLoss", "LocalLossResult", "MixedBatch", "SmashMix", "SmashMixError",
           "TwoPartResult", "mixed_train_step", "two_part_mixed_step", "two_part_step"]
