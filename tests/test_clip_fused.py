import pytest
import torch
from torch import nn

from vqclip.clip import load_clip
from vqclip.clip_fused import fused_modules


def _encode(perceptor, images: torch.Tensor, bf16: bool = False):
    x = images.clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        embeds = perceptor.encode_image(x).float()
    embeds.square().sum().backward()
    return embeds.detach(), x.grad


@pytest.fixture()
def tiny_clip(tiny_models):
    return load_clip(tiny_models["clip"])


def test_fused_image_tower_is_open_clips_maths(tiny_clip):
    """The fused attention and patch embedding give open_clip's embeddings and input gradients."""
    visual = tiny_clip.model.visual
    fused = fused_modules(visual)
    # every block and the patch embedding are replaced, or the comparison below would test nothing
    assert len(fused) == len(visual.transformer.resblocks) + 1 and fused[-1] is visual.conv1
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tiny_clip.set_fused(False)
    plain, plain_grad = _encode(tiny_clip, images)
    tiny_clip.set_fused(True)
    assert all("attention" in m.__dict__ or "forward" in m.__dict__ for m in fused)
    embeds, grad = _encode(tiny_clip, images)
    assert torch.allclose(embeds, plain, atol=1e-5, rtol=1e-5)
    assert torch.allclose(grad, plain_grad, atol=1e-6, rtol=1e-4)
    tiny_clip.set_fused(False)  # switching back restores open_clip's own forwards
    assert not any("attention" in m.__dict__ or "forward" in m.__dict__ for m in fused)
    assert torch.equal(_encode(tiny_clip, images)[0], plain)


def test_fused_image_tower_under_bf16_autocast(tiny_clip):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tiny_clip.set_fused(False)
    plain, plain_grad = _encode(tiny_clip, images, bf16=True)
    tiny_clip.set_fused(True)
    embeds, grad = _encode(tiny_clip, images, bf16=True)
    assert torch.allclose(embeds, plain, atol=0.05, rtol=0.05)
    assert torch.nn.functional.cosine_similarity(grad.flatten(), plain_grad.flatten(), dim=0) > 0.99


def test_fused_forwards_fall_back_where_the_shortcut_does_not_hold(tiny_clip):
    """A mask or cross-attention keeps the MHA path; a size the patches do not divide keeps the convolution."""
    tiny_clip.set_fused(True)
    block = tiny_clip.model.visual.transformer.resblocks[0]
    x = torch.randn(2, 5, block.attn.embed_dim)
    mask = torch.zeros(5, 5)
    mask[:, -1] = float("-inf")
    expected = type(block).attention(block, x, attn_mask=mask)
    assert torch.equal(block.attention(x, attn_mask=mask), expected)
    assert not torch.allclose(block.attention(x), expected)  # the mask mattered, so the fallback was tested
    conv = tiny_clip.model.visual.conv1
    odd = torch.randn(1, 3, 35, 33)
    assert torch.equal(conv(odd), nn.Conv2d.forward(conv, odd))


def test_blocks_of_another_shape_are_left_alone():
    """Only self-attention MHA blocks with batch-first input and a kernel == stride convolution are fused."""

    class Block(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, **kw)

        def attention(self, x):
            return x

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.Module()
            self.transformer.resblocks = nn.ModuleList(
                [Block(batch_first=True), Block(batch_first=False), Block(batch_first=True, add_bias_kv=True)]
            )
            self.conv1 = nn.Conv2d(3, 8, 4, stride=2)

    tower = Tower()
    assert fused_modules(tower) == [tower.transformer.resblocks[0]]
