"""Known models: VQGAN checkpoints by name, CLIP aliases, and where their files live on disk.

Built-in VQGANs and their download sources are data (`vqgan_models.json`); a user's own VQGANs are recorded
by `vqclip models add` in `vqclip.models.json` inside the checkpoints dir and are located by name the same way.
`vqclip models import` records there too where it found an official model's files (used when the checkpoints
dir has none of its own).
Nothing here downloads or hashes: `vqclip.store.hub.resolve_vqgan` does that, once per run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, UnknownNameError

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
    return [
        VQGANEntry(
            name,
            m["description"],
            size_mb=m.get("size_mb"),
            sources={k: Source(tuple(f["urls"]), f.get("sha256")) for k, f in m["files"].items()},
        )
        for name, m in data["models"].items()
    ]


VQGAN_MODELS = {
    e.name: e
    for e in [
        *_load_builtin(),
        VQGANEntry("vqgan_toy", "toy world, 32x32, f=4, trained by vqclip itself (bundled)", bundled=True),
    ]
}

# vqclip's own CLIP names; anything else goes to open_clip as it is
CLIP_ALIASES = {"toy": "clip"}  # relative to the bundled toy folder

DEFAULT_CLIP_TAGS = {"ViT-B-32-quickgelu": "openai"}


def project_root() -> Path:
    """The source checkout (vqclip/store/registry.py is three levels down), or site-packages in a wheel."""
    return Path(__file__).resolve().parents[2]


def bundled_dir() -> Path:
    """The toy models: checkpoints/toy in a source checkout, vqclip/_toy in a wheel."""
    src = project_root() / "checkpoints" / "toy"
    return src if src.is_dir() else Path(__file__).resolve().parents[1] / "_toy"


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
        return {
            n: UserModel(n, Path(m["config"]), Path(m["ckpt"]), m.get("description", ""))
            for n, m in data.get("models", {}).items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{p} is not a vqclip user model list ({e}); fix or delete it") from None


@dataclass(frozen=True)
class Located:
    """Where the files of a VQGAN spec are; `kind` says what the name was and so how its files are trusted."""

    name: str
    config: Path
    ckpt: Path
    kind: str  # "registry" (locked, downloadable), "bundled", "user" (locked), or "path" (the user's own files)
    hint: str  # what to do when a file is missing

    @property
    def missing(self) -> list[Path]:
        """Files not there at all; one that is there but is no regular file (a FIFO, /dev/zero) is refused when
        it is read, with that reason."""
        return [p for p in (self.config, self.ckpt) if not p.exists()]

    @property
    def locked(self) -> bool:
        """Named models are checked against the lock file; paths given directly and bundled files are not."""
        return self.kind in ("registry", "user")


def locate_vqgan(spec: str, ckpt: Optional[str] = None, ckpt_dir: Optional[str] = None) -> Located:
    """A registry name, a user model name or a taming yaml -> where its yaml and checkpoint are (or would be)."""
    base = checkpoints_dir(ckpt_dir)
    override = Path(ckpt).expanduser() if ckpt else None
    if spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec:
        config = Path(spec).expanduser()
        hint = "pass --vqgan-ckpt PATH" if not ckpt else "check the path"
        return Located(config.stem, config, override or config.with_suffix(".ckpt"), "path", hint)
    users = user_models(ckpt_dir)
    if spec in VQGAN_MODELS:
        entry = VQGAN_MODELS[spec]
        folder = bundled_dir() if entry.bundled else base
        kind = "bundled" if entry.bundled else "registry" if not ckpt else "path"
        located = Located(
            spec,
            folder / entry.files[0],
            override or folder / entry.files[1],
            kind,
            f"run `vqclip models download {spec}`, or put them there yourself",
        )
        imported = users.get(spec) if kind == "registry" else None
        if imported and located.missing:  # `models import` found this official model's files elsewhere
            return Located(
                spec,
                imported.config,
                imported.ckpt,
                "user",
                f"it was imported from {imported.config.parent} (`vqclip models import`); import the "
                f"folder again, or run `vqclip models download {spec}`",
            )
        return located
    if spec in users:
        return Located(
            spec,
            users[spec].config,
            override or users[spec].ckpt,
            "user" if not ckpt else "path",
            f"it was added with `vqclip models add {spec}`; add it again with the files' new paths",
        )
    raise UnknownNameError("VQGAN model", spec, {*VQGAN_MODELS, *users})


def resolve_clip(spec: str) -> str:
    """Expand vqclip's CLIP aliases (e.g. `toy`) to open_clip local-dir specs; other specs pass through."""
    if spec in CLIP_ALIASES:
        return f"local-dir:{bundled_dir() / CLIP_ALIASES[spec]}"
    return spec
