"""Known models: VQGAN checkpoints by name, CLIP aliases, and where their files live on disk.

Built-in VQGANs and their download sources are data (`vqgan_models.json`); a user's own VQGANs are recorded
by `vqclip models add` in `vqclip.models.json` inside the checkpoints dir and resolve by name the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import ConfigError, ModelFilesMissing, UnknownNameError

USER_MODELS_NAME = "vqclip.models.json"


@dataclass(frozen=True)
class Source:
    """Where one file of a model comes from: URLs in the order tried, and its SHA-256 when one is published."""

    urls: tuple[str, ...]
    sha256: Optional[str] = None


@dataclass(frozen=True)
class VQGANEntry:
    name: str
    description: str
    bundled: bool = False  # ships inside vqclip (the toy model); otherwise lives in the checkpoints dir
    size_mb: Optional[float] = None  # approximate download size, where a source states it
    sources: dict = field(default_factory=dict, compare=False, hash=False)  # "yaml"/"ckpt" -> Source

    @property
    def files(self) -> tuple[str, str]:
        """(config, checkpoint) file names."""
        return f"{self.name}.yaml", f"{self.name}.ckpt"


def _load_builtin() -> list[VQGANEntry]:
    data = json.loads((Path(__file__).with_name("vqgan_models.json")).read_text())
    return [VQGANEntry(name, m["description"], size_mb=m.get("size_mb"),
                       sources={k: Source(tuple(f["urls"]), f.get("sha256")) for k, f in m["files"].items()})
            for name, m in data["models"].items()]


VQGAN_MODELS = {e.name: e for e in [
    *_load_builtin(),
    VQGANEntry("vqgan_toy", "toy world, 32x32, f=4, trained by vqclip itself (bundled)", bundled=True),
]}

# vqclip's own CLIP names; anything else goes to open_clip as it is
CLIP_ALIASES = {"toy": "clip"}  # relative to the bundled toy folder

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


@dataclass(frozen=True)
class UserModel:
    """A VQGAN added with `vqclip models add`: its own files, wherever they are."""

    name: str
    config: Path
    ckpt: Path
    description: str = ""


def user_models_path(ckpt_dir: Optional[str] = None) -> Path:
    return checkpoints_dir(ckpt_dir) / USER_MODELS_NAME


def user_models(ckpt_dir: Optional[str] = None) -> dict[str, UserModel]:
    p = user_models_path(ckpt_dir)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
        return {n: UserModel(n, Path(m["config"]), Path(m["ckpt"]), m.get("description", ""))
                for n, m in data.get("models", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{p} is not a vqclip user model list ({e}); fix or delete it") from None


def resolve_vqgan(spec: str, ckpt: Optional[str] = None, ckpt_dir: Optional[str] = None) -> tuple[Path, Path, str]:
    """A registry name, a user model name or a taming yaml -> (yaml path, ckpt path, display name).

    Missing files are an error. Files of named models are checked against the lock file (trust on first use).
    """
    base = checkpoints_dir(ckpt_dir)
    if spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec:
        config = Path(spec).expanduser()
        weights = Path(ckpt).expanduser() if ckpt else config.with_suffix(".ckpt")
        name = config.stem
        hint = "pass --vqgan-ckpt PATH" if not ckpt else "check the path"
    elif spec in VQGAN_MODELS:
        entry = VQGAN_MODELS[spec]
        folder = bundled_dir() if entry.bundled else base
        config = folder / entry.files[0]
        weights = Path(ckpt).expanduser() if ckpt else folder / entry.files[1]
        name = spec
        hint = f"run `vqclip models download {spec}`, or put them there yourself"
    elif spec in (users := user_models(ckpt_dir)):
        config, weights, name = users[spec].config, users[spec].ckpt, spec
        weights = Path(ckpt).expanduser() if ckpt else weights
        hint = f"it was added with `vqclip models add {spec}`; add it again with the files' new paths"
    else:
        raise UnknownNameError("VQGAN model", spec, [*VQGAN_MODELS, *user_models(ckpt_dir)])
    missing = [str(p) for p in (config, weights) if not p.is_file()]
    if missing:
        raise ModelFilesMissing(f"VQGAN {name}: missing {' and '.join(missing)}; {hint}")
    bundled = spec in VQGAN_MODELS and VQGAN_MODELS[spec].bundled
    if name == spec and not ckpt and not bundled:
        weights = _verify(spec, config, weights, base)
    return config, weights, name


def _verify(name: str, config: Path, weights: Path, base: Path) -> Path:
    """Check both files against the lock; the weights to load: the safetensors cache of the ckpt when made."""
    from .integrity import cached_weights, verify

    entry = VQGAN_MODELS.get(name)
    hint = f" and run `vqclip models download {name}`" if entry else " or add the model again"
    digests = {}
    for kind, path in (("yaml", config), ("ckpt", weights)):
        source = entry.sources.get(kind) if entry else None
        digests[kind] = verify(path, base, source.sha256 if source else None, hint=hint)
    return cached_weights(base, digests["ckpt"]) or weights


def resolve_clip(spec: str) -> str:
    """Expand vqclip's CLIP aliases (e.g. `toy`) to open_clip local-dir specs; other specs pass through."""
    if spec in CLIP_ALIASES:
        return f"local-dir:{bundled_dir() / CLIP_ALIASES[spec]}"
    return spec
