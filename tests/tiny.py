"""Tiny models written as real files (taming yaml + Lightning-style ckpt, open_clip local-dir) for tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

TINY_DDCONFIG = dict(
    double_z=False,
    z_channels=32,
    resolution=32,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 2],
    num_res_blocks=1,
    attn_resolutions=[],
    dropout=0.0,
)

TINY_CLIP_CFG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
}


def write_vqgan(
    folder: Path, name: str = "tiny_vqgan", gumbel: bool = False, seed: int = 0, n_embed: int = 64, embed_dim: int = 32
) -> tuple[Path, Path]:
    """A taming-format yaml and a Lightning-style checkpoint of a tiny VQGAN with random weights."""
    from vqclip.vqgan import VQGANSpec, build_vqgan

    folder.mkdir(parents=True, exist_ok=True)
    target = "taming.models.vqgan.GumbelVQ" if gumbel else "taming.models.vqgan.VQModel"
    doc = {
        "model": {
            "target": target,
            "params": {
                "embed_dim": embed_dim,
                "n_embed": n_embed,
                "ddconfig": dict(TINY_DDCONFIG),
                "lossconfig": {"target": "taming.modules.losses.DummyLoss"},
            },
        }
    }
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(doc))
    torch.manual_seed(seed)
    model = build_vqgan(VQGANSpec(dict(TINY_DDCONFIG), n_embed, embed_dim, gumbel=gumbel))
    # spread the codebook so random tokens decode to varied images
    with torch.no_grad():
        model.codebook.normal_()
    ckpt = folder / f"{name}.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3, "global_step": 100}, ckpt)
    return config, ckpt


def write_clip(folder: Path, seed: int = 0) -> Path:
    """An open_clip local-dir model: open_clip_config.json + open_clip_model.safetensors."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CFG))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def model_args(tiny_models: dict, out) -> list[str]:
    """The CLI options of a run on the tiny models (as the tiny_models fixture gives them), 32x32, 2 cutouts, CPU."""
    return [
        "--vqgan",
        tiny_models["vqgan"],
        "--clip",
        tiny_models["clip"],
        "--size",
        "32",
        "32",
        "--cutn",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def tiny_cfg(tiny_models: dict, tmp_path, **options):
    """A resolved Config of a run on the tiny models, 32x32, 2 cutouts, CPU, seed 1, outputs under tmp_path/out."""
    from vqclip.config import resolve

    base = {
        "prompt": "a red circle",
        "model.vqgan": tiny_models["vqgan"],
        "model.clip": [tiny_models["clip"]],
        "width": 32,
        "height": 32,
        "cutouts.cutn": 2,
        "device": "cpu",
        "seed": 1,
        "output.dir": str(tmp_path / "out"),
    }
    return resolve(options={**base, **options})
