"""`vqclip models import DIR`: use the model files another tool already downloaded, where they are (no copy).

A peer's folder is what nerdyrodent/VQGAN-CLIP, pixray and friends leave behind: `checkpoints/NAME.yaml` +
`NAME.ckpt` pairs (or taming's own `NAME/configs/*.yaml` + `NAME/checkpoints/last.ckpt`), and OpenAI's CLIP
archives (`~/.cache/clip/ViT-B-32.pt`). Each pair is loaded once and recorded by name with its hashes locked
(`add_vqgan`): an official model's name (`vqgan_imagenet_f16_16384`) then finds these files whenever the checkpoints
dir has none of its own. Each archive whose SHA-256 OpenAI published is read once and cached as safetensors, so
`--clip ViT-B-32-quickgelu:openai` uses it. What cannot be imported is reported with its reason, not fatal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..errors import ModelFilesMissing, VQClipError
from . import integrity
from .hub import add_vqgan
from .registry import VQGAN_MODELS, checkpoints_dir, user_models

__all__ = ["Imported", "import_models"]

_MAX_DEPTH = 4  # a peer's folder, not a whole disk: checkpoints/, logs/NAME/checkpoints/, ...


@dataclass(frozen=True)
class Imported:
    """One model found in the folder: imported (what to pass to use it) or skipped (why)."""

    kind: str  # "vqgan" or "clip"
    files: tuple[Path, ...]
    use: Optional[str] = None  # e.g. "--vqgan vqgan_imagenet_f16_16384"; None when skipped
    why: str = ""  # why it was skipped, or a note ("already imported")

    @property
    def ok(self) -> bool:
        return self.use is not None


def _walk(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    for root, dirs, files in os.walk(folder):  # symlinked folders are not followed
        depth = len(Path(root).relative_to(folder).parts)
        if depth >= _MAX_DEPTH:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(root), sorted(files)


def _pairs(folder: Path) -> Iterator[tuple[str, Path, Path]]:
    """(name, yaml, ckpt): NAME.yaml beside NAME.ckpt, or taming's NAME/configs/*.yaml + NAME/checkpoints/last.ckpt."""
    for root, files in _walk(folder):
        for f in files:
            stem, suffix = os.path.splitext(f)
            if suffix in (".yaml", ".yml") and f"{stem}.ckpt" in files:
                yield stem, root / f, root / f"{stem}.ckpt"
        configs = sorted((root / "configs").glob("*.yaml")) if (root / "configs").is_dir() else []
        if len(configs) == 1 and (root / "checkpoints" / "last.ckpt").is_file():
            yield root.name, configs[0], root / "checkpoints" / "last.ckpt"


def _archives(folder: Path) -> Iterator[Path]:
    from ..openai_clip import is_torchscript

    for root, files in _walk(folder):
        yield from (root / f for f in files if f.endswith(".pt") and is_torchscript(root / f))


def _already(name: str, config: Path, ckpt: Path, base: Path) -> bool:
    """Imported before from these very files, unchanged since (their size and mtime are in the lock)."""
    known = user_models(str(base)).get(name)
    if known is None or (known.config, known.ckpt) != (config, ckpt):
        return False
    for p in (config, ckpt):
        entry, st = integrity.recorded(p, base), p.stat()
        if not entry or (entry.get("size"), entry.get("mtime_ns")) != (st.st_size, st.st_mtime_ns):
            return False
    return True


def _import_vqgan(name: str, config: Path, ckpt: Path, base: Path, folder: Path) -> Imported:
    config, ckpt = config.resolve(), ckpt.resolve()
    files = (config, ckpt)
    official = name in VQGAN_MODELS and not VQGAN_MODELS[name].bundled
    if _already(name, config, ckpt, base):
        return Imported("vqgan", files, f"--vqgan {name}", "already imported")
    try:  # loaded once (the same check as `models add`), hashes locked, the used weights cached as safetensors
        add_vqgan(name, config, ckpt, str(base), description=f"imported from {folder}", official=official)
    except VQClipError as e:
        return Imported("vqgan", files, why=str(e))
    return Imported("vqgan", files, f"--vqgan {name}")


def _import_clip(path: Path, base: Path) -> Imported:
    from ..clip import load_clip
    from ..openai_clip import identify
    from .download import sha256_file

    path = path.resolve()
    digest = sha256_file(path)
    archive = identify(digest)
    if archive is None:
        return Imported(
            "clip",
            (path,),
            why="a TorchScript archive that is not one OpenAI published "
            "(its SHA-256 is unknown); vqclip does not read it",
        )
    integrity.record(path, base, digest, source=f"models import: OpenAI CLIP {archive.name} (published SHA-256)")
    try:  # the hash now comes from the lock (no second hashing); the weights are read once and cached
        load_clip(f"{archive.open_clip}:{path}", ckpt_dir=str(base))
    except VQClipError as e:
        return Imported("clip", (path,), why=str(e))
    return Imported("clip", (path,), f"--clip {archive.open_clip}:openai", f"OpenAI's {archive.name}")


def import_models(folder: str | os.PathLike, ckpt_dir: Optional[str] = None) -> list[Imported]:
    """Register the VQGAN pairs and OpenAI CLIP archives found in folder (see the module docstring)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelFilesMissing(f"{folder} is not a folder; pass the folder that holds the model files")
    base = checkpoints_dir(ckpt_dir)
    found = [_import_vqgan(name, config, ckpt, base, folder) for name, config, ckpt in _pairs(folder)]
    found += [_import_clip(path, base) for path in _archives(folder)]
    if not found:
        raise ModelFilesMissing(
            f"{folder} holds no VQGAN (NAME.yaml beside NAME.ckpt) and no OpenAI CLIP archive "
            f"(*.pt); pass the folder that holds them, e.g. VQGAN-CLIP/checkpoints or "
            f"~/.cache/clip"
        )
    return found
