import torch

from vqclip.ops import clamp_with_grad, nearest_codes, spherical_dist, vector_quantize


def test_vector_quantize_forward_is_nearest_code_and_gradient_reaches_z():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    z = torch.tensor([[[0.9, 1.2], [-0.8, 1.7]]], requires_grad=True)
    zq = vector_quantize(z, codebook)
    assert torch.equal(zq.detach(), codebook[[1, 2]].unsqueeze(0))
    (zq * torch.tensor([2.0, 3.0])).sum().backward()
    # straight-through: d(zq)/d(z) is the identity
    assert torch.equal(z.grad, torch.tensor([[[2.0, 3.0], [2.0, 3.0]]]))


def test_nearest_codes_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    book, z = torch.randn(50, 8, generator=g), torch.randn(4, 6, 8, generator=g)
    brute = torch.cdist(z.reshape(-1, 8), book).argmin(1).view(4, 6)
    assert torch.equal(nearest_codes(z, book), brute)


def test_clamp_with_grad_lets_gradients_back_into_range():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    y = clamp_with_grad(x, 0, 1)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.5, 1.0]))
    # loss = -sum(y): pushes every x up; x=1.5 is above range, so its gradient is dropped
    (-y.sum()).backward()
    assert torch.equal(x.grad, torch.tensor([-1.0, -1.0, 0.0]))


def test_spherical_dist():
    a = torch.tensor([1.0, 0.0])
    assert spherical_dist(a, a * 5) < 1e-6
    assert torch.isclose(spherical_dist(a, torch.tensor([0.0, 1.0])), torch.tensor(2 * (torch.pi / 4) ** 2))
