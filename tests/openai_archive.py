"""A random-weight CLIP in openai/CLIP's own file format, written by the test: no download.

OpenAI publishes CLIP as TorchScript archives (`~/.cache/clip/ViT-B-32.pt`): a zip holding the traced model's code
and a pickle of its module tree, with the state-dict names of openai/CLIP's `model.py` (`visual.conv1.weight`,
`transformer.resblocks.0.attn.in_proj_weight`, ..., plus the `input_resolution`, `context_length` and `vocab_size`
tensors) and most weights stored as float16. The model here is written from the architecture OpenAI describes
(a ViT image tower and a causal text transformer, QuickGELU, the class token, the EOT token's features projected),
independently of open_clip, so comparing its outputs with what vqclip builds through open_clip is a real check.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

# a ViT small enough for tests; OpenAI's towers use 64-wide attention heads, so widths are multiples of 64
TINY = dict(
    embed_dim=32,
    image_size=32,
    patch_size=8,
    vision_width=64,
    vision_layers=2,
    context_length=77,
    vocab_size=49408,
    text_width=64,
    text_layers=2,
)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width: int, mask: torch.Tensor | None = None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, width // 64)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width))
        )
        self.ln_2 = nn.LayerNorm(width)
        self.mask = mask

    def forward(self, x):  # x: [tokens, batch, width], as OpenAI's blocks take it
        h = self.ln_1(x)
        mask = None if self.mask is None else self.mask.to(x.dtype)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Tower(nn.Module):
    def __init__(self, width: int, layers: int, mask: torch.Tensor | None = None):
        super().__init__()
        self.resblocks = nn.Sequential(*[Block(width, mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class Visual(nn.Module):
    def __init__(self, size: int, patch: int, width: int, layers: int, out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn((size // patch) ** 2 + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Tower(width, layers)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out) * width**-0.5)

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)  # [batch, patches, width]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class OpenAICLIP(nn.Module):
    """openai/CLIP's ViT CLIP: the attribute names are its state-dict names."""

    def __init__(
        self,
        embed_dim,
        image_size,
        patch_size,
        vision_width,
        vision_layers,
        context_length,
        vocab_size,
        text_width,
        text_layers,
    ):
        super().__init__()
        self.visual = Visual(image_size, patch_size, vision_width, vision_layers, embed_dim)
        causal = torch.full((context_length, context_length), float("-inf")).triu(1)
        self.transformer = Tower(text_width, text_layers, causal)
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, text_width) * 0.01)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim) * text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * 4.6052)
        for name, value in (
            ("input_resolution", image_size),
            ("context_length", context_length),
            ("vocab_size", vocab_size),
        ):
            self.register_buffer(name, torch.tensor(value))

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, tokens):
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x.transpose(0, 1)).transpose(0, 1))
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ self.text_projection  # the EOT token has the top id

    def forward(self, image, tokens):
        return self.encode_image(image), self.encode_text(tokens)


# what openai/CLIP's build_model stores as float16: convolution, linear and attention weights, the projections
def _half_names(model: nn.Module) -> list[str]:
    names = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear, nn.MultiheadAttention)):
            names += [f"{mod_name}.{n}" for n, _ in mod.named_parameters(recurse=False)]
    return names + ["visual.proj", "text_projection"]


def write_openai_clip(path: Path, seed: int = 0, **arch) -> Path:
    """Trace a random OpenAICLIP and save it as a TorchScript archive at path, weights half as OpenAI's are."""
    torch.manual_seed(seed)
    cfg = {**TINY, **arch}
    model = OpenAICLIP(**cfg).eval()
    for name in _half_names(model):  # rounded to float16 values, kept float32 so the trace runs on CPU
        p = model.get_parameter(name)
        p.data = p.data.half().float()
    image = torch.randn(1, 3, cfg["image_size"], cfg["image_size"])
    tokens = torch.zeros(1, cfg["context_length"], dtype=torch.long)
    tokens[0, :3] = torch.tensor([49406, 320, 49407])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
        traced = torch.jit.trace_module(
            model, {"forward": (image, tokens), "encode_image": (image,), "encode_text": (tokens,)}
        )
        for name in _half_names(model):
            traced.get_parameter(name).data = traced.get_parameter(name).data.half()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(traced, str(path))
    return path


OPEN_CLIP_CONFIG = {  # the same architecture as an open_clip model config (QuickGELU, as OpenAI trained it)
    "embed_dim": TINY["embed_dim"],
    "quick_gelu": True,
    "vision_cfg": {
        "image_size": TINY["image_size"],
        "layers": TINY["vision_layers"],
        "width": TINY["vision_width"],
        "patch_size": TINY["patch_size"],
    },
    "text_cfg": {
        "context_length": TINY["context_length"],
        "vocab_size": TINY["vocab_size"],
        "width": TINY["text_width"],
        "heads": TINY["text_width"] // 64,
        "layers": TINY["text_layers"],
    },
}
