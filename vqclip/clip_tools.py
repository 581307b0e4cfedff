"""CLIP's own uses: image-text similarity (score), text-to-image search over a folder (rank), zero-shot
classification with prompt templates (classify).

Images are seen the way CLIP saw them in training: the shortest side resized to the model's input size
(bicubic), a centre crop, then the model's own mean/std (applied by `Perceptor.encode_image`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .clip import Perceptor, load_clip, parse_clip_spec
from .config import ModelConfig
from .device import pick_device
from .errors import ImageError, UsageError
from .image_files import IMAGE_SUFFIXES, list_images  # noqa: F401  (IMAGE_SUFFIXES: for callers)
from .images import check_image, load_image
from .locks import locked
from .outputs import save_tensors
from .store import checkpoints_dir, resolve_clip

log = logging.getLogger("vqclip")


# a few of OpenAI's ImageNet templates; averaging over several phrasings makes zero-shot labels less brittle
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
)

_BATCH = 32  # images per forward pass: bounds memory on large folders
_CACHE_VERSION = 1


def default_clip() -> str:
    """The CLIP generate uses by default."""
    return ModelConfig().clip[0]


def open_perceptor(spec: Optional[str] = None, device: str = "auto", checkpoints: Optional[str] = None) -> Perceptor:
    """Load a CLIP by spec or vqclip alias (e.g. `toy`) onto a device, with open_clip's cache in checkpoints/clip."""
    cache = str(checkpoints_dir(checkpoints) / "clip")
    return load_clip(resolve_clip(spec or default_clip()), pick_device(device), cache_dir=cache, ckpt_dir=checkpoints)


def clip_view(path: str | Path, size: int) -> torch.Tensor:
    """An image file -> [1, 3, size, size] in [0, 1]: shortest side to `size` (bicubic), centre crop."""
    image = load_image(path)
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = F.interpolate(image, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[..., top : top + size, left : left + size].clamp(0, 1)


@torch.no_grad()
def encode_views(perceptor: Perceptor, views: Sequence[torch.Tensor]) -> torch.Tensor:
    """[1, 3, S, S] views -> unit-length embeddings [N, D] on the CPU, a batch at a time."""
    out = []
    for i in range(0, len(views), _BATCH):
        batch = torch.cat(list(views[i : i + _BATCH])).to(perceptor.mean.device)
        out.append(F.normalize(perceptor.encode_image(batch).float(), dim=-1).cpu())
    return torch.cat(out)


def embed_images(perceptor: Perceptor, paths: Sequence[Path]) -> torch.Tensor:
    """Image files -> unit-length embeddings [N, D]; an unreadable file raises ImageError."""
    return encode_views(perceptor, [clip_view(p, perceptor.input_size) for p in paths])


def embed_texts(perceptor: Perceptor, texts: Sequence[str]) -> torch.Tensor:
    """Texts -> unit-length embeddings [N, D] on the CPU."""
    return F.normalize(perceptor.encode_text(texts), dim=-1).cpu()


def check_images(paths: Sequence[str | Path]) -> list[Path]:
    """Every path must be a readable image file: caught before a model is loaded."""
    if not paths:
        raise UsageError("give at least one image")
    for p in paths:
        if Path(p).is_dir():
            raise ImageError(f"{p} is a folder; give image files, or use `vqclip rank {p} TEXT` for a folder")
        check_image(p, "image")
    return [Path(p) for p in paths]


def check_text(text: str, what: str) -> str:
    if not text.strip():
        raise UsageError(f'the {what} is empty; give some text, e.g. "a red circle"')
    return text.strip()


def score(perceptor: Perceptor, paths: Sequence[Path], prompt: str) -> list[float]:
    """Cosine similarity of each image to the prompt, in the order given."""
    text = embed_texts(perceptor, [check_text(prompt, "prompt")])
    return (embed_images(perceptor, paths) @ text.T).squeeze(1).tolist()


# ---------------------------------------------------------------------------------------------------------
# zero-shot classification


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """ "cat, dog,person" -> ["cat", "dog", "person"]; at least two distinct labels."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    items = [s.strip() for s in items if s.strip()]
    if len(items) < 2:
        raise UsageError(f'give at least two labels, comma-separated, e.g. --labels "cat,dog" (got {len(items)})')
    seen = set()
    for label in items:
        if label.lower() in seen:
            raise UsageError(f"label {label!r} is given twice")
        seen.add(label.lower())
    return items


def check_templates(templates: Sequence[str]) -> list[str]:
    if not templates:
        raise UsageError("give at least one template")
    for t in templates:
        if t.count("{}") != 1:
            raise UsageError(f'template {t!r} needs exactly one {{}} where the label goes, e.g. "a photo of a {{}}."')
    return list(templates)


def label_embeddings(perceptor: Perceptor, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """One unit vector per label: the mean of its templated captions' embeddings (CLIP's prompt ensembling)."""
    texts = [t.replace("{}", label) for label in labels for t in templates]
    embeds = embed_texts(perceptor, texts).view(len(labels), len(templates), -1).mean(1)
    return F.normalize(embeds, dim=-1)


@dataclass
class Prediction:
    label: str
    probability: float


def classify(
    perceptor: Perceptor, path: Path, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> list[Prediction]:
    """Zero-shot classification: softmax over labels of the model's logit scale x cosine, best first."""
    labels, templates = parse_labels(labels), check_templates(templates)
    logits = perceptor.logit_scale * embed_images(perceptor, [path]) @ label_embeddings(perceptor, labels, templates).T
    probs = logits.softmax(dim=-1)[0].tolist()
    return sorted((Prediction(lb, p) for lb, p in zip(labels, probs)), key=lambda x: -x.probability)


# ---------------------------------------------------------------------------------------------------------
# text-to-image search over a folder, with an embedding cache


def model_key(perceptor: Perceptor) -> str:
    """Names the weights: the spec, plus size and mtime of local weight files so retrained weights miss the cache."""
    spec = parse_clip_spec(perceptor.name)
    if spec.model.startswith("local-dir:"):
        files = sorted(Path(spec.model.split(":", 1)[1]).iterdir())
    elif spec.pretrained and Path(spec.pretrained).is_file():
        files = [Path(spec.pretrained)]
    else:
        files = []
    stats = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()]
    return "|".join([perceptor.name, *stats])


def _file_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class EmbeddingCache:
    """Image embeddings of one folder under one model, keyed by path + size + mtime; kept in one file."""

    def __init__(self, path: Path, model: str):
        self.path, self.model = path, model
        self.entries: dict[str, dict] = {}
        if path.is_file():
            self._load()

    @classmethod
    def for_folder(cls, folder: Path, model: str, checkpoints: Optional[str] = None) -> "EmbeddingCache":
        """The cache file of (folder, model) in checkpoints/cache/embeddings (never inside the user's folder)."""
        root = checkpoints_dir(checkpoints) / "cache" / "embeddings"
        digest = hashlib.sha256(f"{model}\n{folder.resolve()}".encode()).hexdigest()[:20]
        return cls(root / f"{digest}.pt", model)

    def _load(self) -> None:
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            if data.get("version") == _CACHE_VERSION and data.get("model") == self.model:
                entries = dict(data["entries"])
                for entry in entries.values():  # vqclip's own file, but checked like any file from disk
                    if not (isinstance(entry["embedding"], torch.Tensor) and len(entry["file"]) == 2):
                        raise ValueError("not an embedding entry")
                self.entries = entries
        except Exception as e:  # noqa: BLE001 - a broken cache is only a slower query, never an error
            log.warning(f"ignoring unreadable embedding cache {self.path} ({type(e).__name__}); recomputing")

    def get(self, path: Path) -> Optional[torch.Tensor]:
        entry = self.entries.get(str(path.resolve()))
        return entry["embedding"] if entry is not None and entry["file"] == _file_key(path) else None

    def put(self, path: Path, embedding: torch.Tensor) -> None:
        self.entries[str(path.resolve())] = {"file": _file_key(path), "embedding": embedding.clone()}

    def save(self, keep: Sequence[Path]) -> None:
        """Write the entries of `keep` only, so deleted files drop out of the cache."""
        wanted = {str(p.resolve()) for p in keep}
        with locked(self.path):  # another process may have saved this folder's cache meanwhile: keep its entries
            disk = EmbeddingCache(self.path, self.model).entries if self.path.is_file() else {}
            entries = {k: v for k, v in {**disk, **self.entries}.items() if k in wanted}
            save_tensors({"version": _CACHE_VERSION, "model": self.model, "entries": entries}, self.path)


@dataclass
class RankResult:
    ranked: list[tuple[Path, float]]  # best first
    skipped: list[Path]  # image-named files that could not be read
    computed: int  # embeddings computed now
    cached: int  # embeddings read from the cache


def embed_folder(
    perceptor: Perceptor, images: Sequence[Path], cache: Optional[EmbeddingCache] = None
) -> tuple[list[Path], torch.Tensor, list[Path], int]:
    """Embeddings of image files, reusing the cache: (paths, [N, D], skipped files, number computed)."""
    cached = {p: cache.get(p) for p in images} if cache is not None else {}
    views, skipped = {}, []
    for p in images:
        if cached.get(p) is None:
            try:  # a broken file is skipped with a notice, not fatal to the whole search
                views[p] = clip_view(p, perceptor.input_size)
            except ImageError as e:
                log.warning(f"skipping {p}: {e}")
                skipped.append(p)
    fresh = dict(zip(views, encode_views(perceptor, list(views.values())))) if views else {}
    if cache is not None and fresh:
        for p, e in fresh.items():
            cache.put(p, e)
        cache.save(keep=images)
    paths = [p for p in images if p not in skipped]
    if not paths:
        raise ImageError(f"none of the {len(images)} images could be read")
    return paths, torch.stack([fresh.get(p, cached.get(p)) for p in paths]), skipped, len(fresh)


def check_rank(
    folder: str | Path,
    query: str,
    top: Optional[int],
    recursive: bool = True,
    frames: bool = False,
    checkpoints: Optional[str] = None,
    note: bool = False,
) -> list[Path]:
    """What rank can check without a model: the folder holds images, a query, a positive --top; the images."""
    images = list_images(folder, recursive, frames, checkpoints, note)
    if top is not None and top < 1:
        raise UsageError(f"--top must be at least 1 (got {top})")
    check_text(query, "query")
    return images


def rank(
    perceptor: Perceptor,
    folder: str | Path,
    query: str,
    top: Optional[int] = None,
    use_cache: bool = True,
    checkpoints: Optional[str] = None,
    recursive: bool = True,
    frames: bool = False,
) -> RankResult:
    """Text-to-image search: the folder's images (see list_images) by cosine similarity to the query, best first."""
    images = check_rank(folder, query, top, recursive, frames, checkpoints, note=True)
    cache = EmbeddingCache.for_folder(Path(folder), model_key(perceptor), checkpoints) if use_cache else None
    paths, embeds, skipped, computed = embed_folder(perceptor, images, cache)
    scores = (embeds @ embed_texts(perceptor, [query.strip()]).T).squeeze(1)
    order = scores.argsort(descending=True)[:top].tolist()
    return RankResult([(paths[i], float(scores[i])) for i in order], skipped, computed, len(paths) - computed)
