"""Reading model files safely: state dicts from .ckpt/.pt/.pth (weights only) or .safetensors.

Official taming checkpoints are Lightning pickles; they are read with `torch.load(weights_only=True)` and one
allowlisted stand-in for the ModelCheckpoint class their callbacks are keyed by. Anything else pickled is refused,
never retried unsafely. Zip-format files are memory-mapped (private, copy-on-write): vqclip replaces model files
only by renaming a new file over them, which leaves a mapped file intact; a file truncated in place while a run
has it mapped would end that run.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
import zipfile

import torch

from .errors import CheckpointError, ModelFilesMissing, first_line
from .files import check_regular

__all__ = ["load_checkpoint"]


class _ModelCheckpointStandIn:
    """Stands in for pytorch_lightning's ModelCheckpoint, whose class keys the callbacks of official ckpts."""


# the only globals a checkpoint may name beyond plain tensors and containers
_LIGHTNING_GLOBALS = [
    (_ModelCheckpointStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
]


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """Read a .ckpt/.pt/.pth or .safetensors file safely and return its state dict."""
    path = check_regular(path, f"{what} file", "give the model's checkpoint file", ModelFilesMissing)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{what} {path} is corrupt or truncated ({e}); download it again") from None
    try:
        # a corrupt file can make torch warn (e.g. about an unknown pickle protocol) before it fails
        with torch.serialization.safe_globals(_LIGHTNING_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            # a zip (torch.save's format since torch 1.6) is memory-mapped: tensors are read as they are used,
            # and loaded with assign=True they become the weights without a copy (~2.4 s less for ViT-B/32)
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "not an allowed global" in str(e) or "GLOBAL" in str(e):
            # name what it pickles, not torch's message, whose first lines advise how to load the file unsafely
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what_global = found.group(1) if found else "a Python object"
            raise CheckpointError(
                f"{what} {path} was refused: it pickles {what_global}, not only tensors, and loading it could "
                f"run arbitrary code; use a trusted file"
            ) from None
        raise CheckpointError(f"{what} {path} is corrupt or truncated ({first_line(e)}); download it again") from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        # random bytes read as pickle opcodes fail in many more ways
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
        struct.error,
    ) as e:
        raise CheckpointError(f"{what} {path} is corrupt or truncated ({first_line(e)}); download it again") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{what} {path} holds no state dict of tensors")
    return ckpt
