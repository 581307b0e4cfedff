import torch
from tiny import TINY_DDCONFIG
from torch import nn

from vqclip import bf16
from vqclip.clip import load_clip
from vqclip.vqgan import VQGANSpec, build_vqgan


def _run(fn, x: torch.Tensor, autocast: bool):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        out = fn(x).float()
    out.square().mean().backward()
    return out.detach(), x.grad


def _copies(module: nn.Module) -> list:
    return [m for m in module.modules() if m.__dict__.get("_vqclip_bf16")]


def test_kept_bf16_weights_are_autocasts_maths(tiny_models):
    """Decoder and CLIP tower give bit-identical outputs and gradients with and without the kept copies."""
    torch.manual_seed(0)
    vqgan = build_vqgan(VQGANSpec(ddconfig={**TINY_DDCONFIG, "attn_resolutions": [16]}, n_embed=64, embed_dim=32))
    vqgan.requires_grad_(False).set_fused_attention(True)
    clip = load_clip(tiny_models["clip"])
    clip.set_fused(True)  # its patch embedding has a forward of its own: it must read the kept copy too
    cases = [
        (vqgan.decoder, vqgan.decode, torch.randn(2, 32, 8, 8)),
        (clip.model.visual, clip.encode_image, torch.rand(2, 3, 32, 32)),
    ]
    for module, fn, x in cases:
        bf16.keep([module], False)
        plain = _run(fn, x, True), _run(fn, x, False)
        bf16.keep([module], True)
        kept = _run(fn, x, True), _run(fn, x, False)
        for a, b in zip(plain, kept):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert _copies(module), "no copy was made: the kept weights were not used"
        assert all(v[2].dtype == torch.bfloat16 for m in _copies(module) for v in m.__dict__["_vqclip_bf16"].values())
    conv1 = clip.model.visual.conv1
    assert conv1.forward.func.__name__ == "_patch_embedding"  # the fused patch embedding kept its own forward
    assert conv1.__dict__["_vqclip_bf16"], "and read its weights through the kept copy"


def test_copies_are_made_once_and_again_when_the_weights_change():
    conv = nn.Conv2d(3, 4, 3).requires_grad_(False)
    bf16.keep([conv], True)
    x = torch.randn(1, 3, 8, 8)
    with torch.autocast("cpu", torch.bfloat16):
        conv(x)
        first = conv.__dict__["_vqclip_bf16"]["weight"][2]
        conv(x)
        assert conv.__dict__["_vqclip_bf16"]["weight"][2] is first  # kept, not cast again
        with torch.no_grad():
            conv.weight.mul_(2)
        out = conv(x)
    assert torch.equal(conv.__dict__["_vqclip_bf16"]["weight"][2], conv.weight.bfloat16())
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(out, nn.Conv2d.forward(conv, x))
    bf16.keep([conv], False)
    assert "forward" not in conv.__dict__ and "_vqclip_bf16" not in conv.__dict__
