"""Known models: VQGAN checkpoints by name, CLIP aliases, and where their files live on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import ModelFilesMissing, UnknownNameError


@dataclass(frozen=True)
class VQGANEntry:
    name: str
    description: str
    bundled: bool = False  # ships inside vqclip (the toy model); otherwise lives in the checkpoints dir

    @property
    def files(self) -> tuple[str, str]:
        """(config, checkpoint) file names."""
        return f"{self.name}.yaml", f"{self.name}.ckpt"


VQGAN_MODELS = {e.name: e for e in [
    VQGANEntry("vqgan_imagenet_f16_16384", "ImageNet, f=16, 16384 codes (the default)"),
    VQGANEntry("vqgan_imagenet_f16_1024", "ImageNet, f=16, 1024 codes"),
    VQGANEntry("vqgan_gumbel_f8_8192", "OpenImages, f=8, 8192 codes, Gumbel quantiser"),
    VQGANEntry("wikiart_16384", "WikiArt, f=16, 16384 codes"),
    VQGANEntry("wikiart_1024", "WikiArt, f=16, 1024 codes"),
    VQGANEntry("coco", "COCO-Stuff, f=16, 8192 codes"),
    VQGANEntry("faceshq", "FacesHQ, f=16, 1024 codes"),
    VQGANEntry("sflckr", "S-FLCKR landscapes, f=16, 1024 codes"),
    VQGANEntry("vqgan_toy", "toy world, 32x32, f=4, trained by vqclip itself (bundled)", bundled=True),
]}

# vqclip's own CLIP names; anything else goes to open_clip as it is
CLIP_ALIASES = {"toy": "toy/clip"}

DEFAULT_CLIP_TAGS = {"ViT-B-32-quickgelu": "openai"}


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def bundled_dir() -> Path:
    """The toy models: checkpoints/toy in a source checkout, vqclip/_toy in a wheel."""
    src = project_root() / "checkpoints" / "toy"
    return src if src.is_dir() else Path(__file__).resolve().parent / "_toy"


def checkpoints_dir(override: Optional[str] = None) -> Path:
    """Where model files live: the option, $VQCLIP_CHECKPOINTS, the checkout's checkpoints/, or a user cache."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("VQCLIP_CHECKPOINTS"):
        return Path(os.environ["VQCLIP_CHECKPOINTS"]).expanduser()
    if (project_root() / "pyproject.toml").is_file():
        return project_root() / "checkpoints"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "vqclip" / "checkpoints"


def resolve_vqgan(spec: str, ckpt: Optional[str] = None, ckpt_dir: Optional[str] = None) -> tuple[Path, Path, str]:
    """A registry name or a taming yaml -> (yaml path, ckpt path, display name); missing files are an error."""
    if spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec:
        config = Path(spec).expanduser()
        weights = Path(ckpt).expanduser() if ckpt else config.with_suffix(".ckpt")
        name = config.stem
        hint = "pass --vqgan-ckpt PATH" if not ckpt else "check the path"
    elif spec in VQGAN_MODELS:
        entry = VQGAN_MODELS[spec]
        base = bundled_dir() if entry.bundled else checkpoints_dir(ckpt_dir)
        config = base / entry.files[0]
        weights = Path(ckpt).expanduser() if ckpt else base / entry.files[1]
        name = spec
        hint = f"run `vqclip models download {spec}`, or put them there yourself"
    else:
        raise UnknownNameError("VQGAN model", spec, VQGAN_MODELS)
    missing = [str(p) for p in (config, weights) if not p.is_file()]
    if missing:
        raise ModelFilesMissing(f"VQGAN {name}: missing {' and '.join(missing)}; {hint}")
    return config, weights, name


def resolve_clip(spec: str) -> str:
    """Expand vqclip's CLIP aliases (e.g. `toy`) to open_clip local-dir specs; other specs pass through."""
    if spec in CLIP_ALIASES:
        return f"local-dir:{bundled_dir().parent / CLIP_ALIASES[spec]}"
    return spec
