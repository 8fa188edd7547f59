"""Helpers of the exact algorithm tests: networks whose outputs are set by hand, optimisers that only record."""
import pytest
import torch

from offline_marl.nn import BatchedMLP


class RecordingOptimizer:
    """Stands in for a learner's optimiser: keeps the parameters still and records their gradients at `step`."""

    def __init__(self, parameters):
        self.parameters = list(parameters)
        self.grads = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def step(self) -> None:
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.parameters]


def set_constant_output(mlp: BatchedMLP, values) -> None:
    """Make every group's output constant: zero output weights, output bias = `values` (broadcastable to the
    bias, `[G, 1, out]`)."""
    last = mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.as_tensor(values, dtype=last.bias.dtype).expand_as(last.bias))


@pytest.fixture
def constant_output():
    return set_constant_output


@pytest.fixture
def recording_optimizer():
    return RecordingOptimizer
