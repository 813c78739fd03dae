"""Segment artifacts shipped in the wheel: lenet5-fmnist (LeNet-5 cut at 1,3, for Fashion-MNIST), the default."""
