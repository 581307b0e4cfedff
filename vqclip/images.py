"""Image files <-> tensors, and the checks an input image passes before any model loads.

Tensors are [3, H, W] or [B, 3, H, W] in [0, 1]; files are read with Pillow, decoded whole (a truncated file fails
here, not after the models load), and written by `vqclip.outputs`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import ImageError, first_line
from .files import open_regular

__all__ = ["check_image", "load_image", "to_array", "to_pil"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FIX = "give a PNG, JPEG or WebP file"


def check_image(path: str | Path, what: str) -> None:
    """A local, regular, decodable image file: URLs are never fetched, a FIFO or a device is refused without being
    opened (see vqclip.files), and a bad file fails before models load."""
    from PIL import Image

    if _URL.match(str(path)):
        raise ImageError(f"{what} {path} is a URL; vqclip does not fetch URLs, download it and pass the local file")
    p = Path(path)
    with open_regular(p, what, _FIX, ImageError) as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageError(f"{what} {p} is empty (0 bytes); {_FIX}")
        try:
            with Image.open(f) as im:
                im.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise ImageError(f"cannot read {what} {p} ({first_line(e)}); {_FIX}") from None


def load_image(path: str | Path, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """An image file -> [1, 3, H, W] in [0, 1], optionally resized to (width, height)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    try:
        with open_regular(path, "image", _FIX, ImageError) as f, Image.open(f) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize(size, Image.LANCZOS)
            return pil_to_tensor(im).float().div(255).unsqueeze(0)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path} ({e}); give a PNG, JPEG or WebP file") from None


def to_pil(image: torch.Tensor):
    """[3, H, W] in [0, 1] -> PIL image, rounded to the nearest level (so a saved image reloads to within 1/510)."""
    from PIL import Image

    array = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def to_array(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [0, 1] -> uint8 [H, W, 3]."""
    return np.asarray(to_pil(image))
