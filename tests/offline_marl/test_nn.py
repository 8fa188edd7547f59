"""Batched networks compute, per group, what a plain linear layer computes."""
import pytest
import torch

from offline_marl.nn import BatchedLinear


@pytest.mark.parametrize("out_features", [1, 3])  # one output takes the elementwise path, more take baddbmm
def test_batched_linear_is_one_linear_layer_per_group_forward_and_backward(out_features):
    torch.manual_seed(0)
    layer = BatchedLinear(2, 5, out_features)
    x = torch.randn(2, 4, 3, 5, requires_grad=True)
    out = layer(x)
    assert out.shape == (2, 4, 3, out_features)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)

    weight = layer.weight.detach().double().requires_grad_()
    bias = layer.bias.detach().double().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    expected = torch.stack([x64[g] @ weight[g] + bias[g, 0] for g in range(2)])
    expected.backward(grad_out.double())
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    for got, want in ((x.grad, x64.grad), (layer.weight.grad, weight.grad), (layer.bias.grad, bias.grad)):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
