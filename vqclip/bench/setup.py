"""The benchmark's configurations and its random-weight models of the real architectures.

Speed does not depend on the weights' values, so the models are built from a fixed seed with no download:
the ImageNet f16_16384 VQGAN from its published architecture (vqclip/architectures) and open_clip's CLIPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..clip import check_clip, load_clip, register_clip_architectures
from ..config import Config, CutoutConfig, ModelConfig, SpeedConfig
from ..errors import UnknownNameError
from ..plan import Plan
from ..prompts import parse_prompts
from ..runner import Models, prepare_run
from ..store import VQGANFiles
from ..vqgan import build_vqgan, read_vqgan_yaml

ARCHITECTURES = Path(__file__).resolve().parents[1] / "architectures"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
CODEBOOK_STD = 0.05


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration: image size, cutouts, CLIP models, images per step."""

    name: str
    size: int
    cutn: int
    clip: tuple[str, ...] = ("ViT-B-32-quickgelu",)
    batch: int = 1
    vqgan: str = "vqgan_imagenet_f16_16384"  # an architecture file in vqclip/architectures


BENCH_CONFIGS = {
    c.name: c
    for c in [
        BenchConfig("S", 256, 32),
        BenchConfig("S8", 256, 32, batch=8),
        BenchConfig("M", 512, 64),
        BenchConfig("M2", 512, 64, ("ViT-B-16-quickgelu", "ViT-B-32-quickgelu")),
        BenchConfig("L", 1024, 64),
        BenchConfig("CPU", 128, 8),
        # the toy world's size (32x32, an 8x8 latent) with the toy architectures, as `--preset toy` runs
        BenchConfig("toy", 32, 32, ("vqclip-toy-clip",), vqgan="vqgan_toy"),
    ]
}
# --smoke: the same code path on tiny models, for tests and a quick check that everything runs
SMOKE = BenchConfig("smoke", 32, 4, ("vqclip-tiny-clip",), vqgan="vqgan_tiny")


def default_config(device: torch.device) -> str:
    return "S" if device.type == "cuda" else "CPU"


def bench_config(name: str, smoke: bool = False) -> BenchConfig:
    if smoke:
        return SMOKE
    if name not in BENCH_CONFIGS:
        raise UnknownNameError("bench config", name, BENCH_CONFIGS)
    return BENCH_CONFIGS[name]


# ---------------------------------------------------------------------------------------------------------
# models and the run's config


def build_models(bc: BenchConfig, device: torch.device, seed: int = 0) -> Models:
    """Random-weight models of bc's architectures; the same seed always gives the same weights."""
    register_clip_architectures(ARCHITECTURES)
    torch.manual_seed(seed)
    vqgan = build_vqgan(read_vqgan_yaml(ARCHITECTURES / f"{bc.vqgan}.yaml"), name=bc.vqgan)
    with torch.no_grad():  # spread like a trained codebook, so steps of lr 0.1 change codes (the default
        vqgan.codebook.normal_(0, CODEBOOK_STD)  # init is a ball of radius 1/n_embed: no step leaves a code)
    vqgan = vqgan.eval().requires_grad_(False).to(device)
    perceptors = []
    for name in bc.clip:
        torch.manual_seed(seed)
        perceptors.append(load_clip(f"{name}:random", device))
    return Models(vqgan, perceptors, bc.vqgan)


def run_config(bc: BenchConfig, steps: int, speed: SpeedConfig) -> tuple[Config, Plan]:
    register_clip_architectures(ARCHITECTURES)  # the plan's CLIP names must resolve (memory estimate)
    cfg = Config(
        prompt=PROMPT,
        width=bc.size,
        height=bc.size,
        steps=steps,
        seed=0,
        device="auto",
        model=ModelConfig(vqgan=bc.vqgan, clip=[f"{c}:random" for c in bc.clip]),
        cutouts=CutoutConfig(cutn=bc.cutn),
        speed=speed,
    )
    yaml = ARCHITECTURES / f"{bc.vqgan}.yaml"
    files = VQGANFiles(bc.vqgan, yaml, yaml, yaml)  # random weights: nothing is read but the architecture
    plan = Plan(
        files,
        read_vqgan_yaml(yaml),
        [check_clip(c) for c in cfg.model.clip],
        parse_prompts(PROMPT),
        [],
        bc.size,
        bc.size,
    )
    return cfg, plan


def bench_steps(cfg: Config, plan: Plan, models: Models, device: torch.device, prompts, seeds):
    """The generate loop's Steps through the same preparation as every run (fast path, memory, OOM advice)."""
    run = prepare_run(cfg, plan, device=device, batch=len(seeds), outputs=False, models=models)
    return run.steps(prompts, seeds)
