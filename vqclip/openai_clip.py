"""OpenAI's own CLIP files: the TorchScript archives openai/CLIP's `clip.load` downloads into `~/.cache/clip`.

- Only archives OpenAI published are read: each one's SHA-256 is part of its download URL, and openai/CLIP's
  `_download` checks the same. The table below is copied from openai/CLIP `clip/clip.py` `_MODELS` (commit
  d05afc4, 2024); open_clip 3.3's `pretrained.py` lists the same URLs for its `openai` tags.
- The archive's code is never run, not even after its hash is checked: its weights are read out of the zip by a
  restricted unpickler that knows tensors, storages and plain containers, and builds every TorchScript class as
  an inert record of its attributes. `torch.jit.load` is never called (and torch deprecates it).
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .errors import CheckpointError, first_line

if TYPE_CHECKING:
    import torch

__all__ = [
    "MEAN",
    "PUBLISHED",
    "STD",
    "OpenAIArchive",
    "by_name",
    "default_cache_dir",
    "is_torchscript",
    "read_archive",
]

# openai/CLIP clip/clip.py `_transform`: the normalisation every OpenAI CLIP was trained with
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# tensors OpenAI's archives hold beside the weights, which openai/CLIP's build_model drops too
_NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size")


@dataclass(frozen=True)
class OpenAIArchive:
    """One archive OpenAI published: its name in openai/CLIP, its file name, and the open_clip model it is."""

    name: str  # openai/CLIP's name, e.g. ViT-B/32
    file: str  # the file name in its URL and in ~/.cache/clip
    open_clip: str  # the open_clip architecture vqclip builds for it (QuickGELU, as OpenAI trained them)

    @property
    def names(self) -> tuple[str, str]:
        """The open_clip names a user may pair with this file: with or without the -quickgelu suffix."""
        return self.open_clip, self.open_clip.removesuffix("-quickgelu")


_URL = "https://openaipublic.azureedge.net/clip/models/{sha}/{file}"

# SHA-256 -> archive, from the `_MODELS` URLs of openai/CLIP clip/clip.py (see the module docstring)
PUBLISHED: dict[str, OpenAIArchive] = {
    sha: OpenAIArchive(*rest)
    for sha, *rest in [
        ("afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50", "RN50.pt", "RN50-quickgelu"),
        ("8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101", "RN101.pt", "RN101-quickgelu"),
        ("7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4", "RN50x4.pt", "RN50x4-quickgelu"),
        (
            "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
            "RN50x16",
            "RN50x16.pt",
            "RN50x16-quickgelu",
        ),
        (
            "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
            "RN50x64",
            "RN50x64.pt",
            "RN50x64-quickgelu",
        ),
        (
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            "ViT-B/32",
            "ViT-B-32.pt",
            "ViT-B-32-quickgelu",
        ),
        (
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
            "ViT-B/16",
            "ViT-B-16.pt",
            "ViT-B-16-quickgelu",
        ),
        (
            "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
            "ViT-L/14",
            "ViT-L-14.pt",
            "ViT-L-14-quickgelu",
        ),
        (
            "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
            "ViT-L/14@336px",
            "ViT-L-14-336px.pt",
            "ViT-L-14-336-quickgelu",
        ),
    ]
}


def url(sha256: str) -> str:
    return _URL.format(sha=sha256, file=PUBLISHED[sha256].file)


def by_name(model: str) -> list[tuple[str, OpenAIArchive]]:
    """The published archives (hash, archive) an open_clip model name can load, e.g. ViT-B-32 -> ViT-B-32.pt."""
    return [(sha, a) for sha, a in PUBLISHED.items() if model in a.names]


def default_cache_dir() -> Path:
    """Where openai/CLIP's `clip.load` keeps its downloads (its default download_root)."""
    return Path("~/.cache/clip").expanduser()


def is_torchscript(path: str | Path) -> bool:
    """A TorchScript archive: a zip with a top folder holding data.pkl, constants.pkl and the model's code/."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    top = {n.split("/", 1)[0] for n in names if n.endswith("/data.pkl") and n.count("/") == 1}
    return any(f"{t}/constants.pkl" in names and any(n.startswith(f"{t}/code/") for n in names) for t in top)


class _Record:
    """Stands in for every TorchScript class in an archive: keeps its attributes, runs nothing."""

    qualname = "?"

    def __setstate__(self, state):
        self.state = state


# the storage classes an archive names -> the dtype of their data (torch is imported only to read an archive,
# so listing models does not pay for it)
_STORAGES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if end > storage.numel():
        raise CheckpointError(f"a tensor of {tuple(size)} reaches past its storage of {storage.numel()} values")
    return storage.as_strided(tuple(size), tuple(stride), offset)


# torch.jit._pickle's helpers only tag lists with their element type: the values pass through as they are
_JIT_PICKLE = {"build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_genericlist"}


class _ArchiveUnpickler(pickle.Unpickler):
    """data.pkl of a TorchScript archive, with nothing importable but tensors, storages and inert records."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix, self.storages = archive, prefix, {}
        self.records: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            import torch

            return getattr(torch, _STORAGES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in _JIT_PICKLE:
            return lambda values: values
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return lambda value, type_str: value
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self.records:
                self.records[qualname] = type(name, (_Record,), {"qualname": qualname})
            return self.records[qualname]
        raise CheckpointError(f"it pickles {module}.{name}, which a CLIP archive never holds")

    def persistent_load(self, pid):
        import torch

        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"it names an unknown kind of storage {kind!r}")
        if key not in self.storages:
            data = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
            if len(data) != numel * dtype.itemsize:
                raise CheckpointError(f"storage {key} holds {len(data)} bytes instead of {numel * dtype.itemsize}")
            self.storages[key] = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        return self.storages[key]


def _flatten(obj, prefix: str, out: dict) -> None:
    import torch

    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, _Record):
            _flatten(value, f"{prefix}{key}.", out)


def read_archive(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive by their state-dict names (OpenAI's extra tensors dropped).

    Reads the zip's data.pkl with `_ArchiveUnpickler`: no code from the archive runs and nothing is imported.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pkl:
                raise CheckpointError("it has no data.pkl")
            prefix = pkl[0].split("/", 1)[0]
            with z.open(pkl[0]) as f:
                root = _ArchiveUnpickler(f, z, prefix).load()
    except CheckpointError as e:
        raise CheckpointError(f"CLIP archive {path} could not be read: {e}") from None
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        KeyError,
        ValueError,
        TypeError,
        IndexError,
        AttributeError,
        pickle.UnpicklingError,
        RuntimeError,
    ) as e:
        raise CheckpointError(
            f"CLIP archive {path} is corrupt or truncated ({first_line(e)}); download it again"
        ) from None
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    if not out:
        raise CheckpointError(f"CLIP archive {path} holds no weights")
    return {k: v for k, v in out.items() if k not in _NOT_WEIGHTS}


def refusal(path: Path, digest: str) -> str:
    """Why an archive with an unknown hash is not read, and how to make it a file vqclip can load."""
    return (
        f"{path} is a TorchScript archive, but its SHA-256 {digest[:16]}... is not one OpenAI published, so "
        f"vqclip does not read it; if you trust it, save its weights as a state dict with openai/CLIP "
        f"(`m, _ = clip.load(PATH, device='cpu', jit=False); torch.save(m.state_dict(), 'weights.pt')`) and "
        f"pass --clip NAME:weights.pt"
    )


def identify(digest: str) -> Optional[OpenAIArchive]:
    return PUBLISHED.get(digest)
