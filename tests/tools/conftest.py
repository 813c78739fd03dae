"""Tools tests run PyTorch on one thread: on two shared, busy cores its OpenMP barriers cost more than they gain."""
import torch

torch.set_num_threads(1)
