"""The model store: which models exist (registry), getting their files (download), trusting them (integrity).

This is the API the rest of vqclip uses; the modules behind it are `registry`, `download`,
`integrity`, `hub` and `listing`.
"""

from .download import Progress, ProgressFn
from .hub import (
    VQGANFiles,
    add_vqgan,
    cache_loaded,
    convert_to_safetensors,
    download_clip,
    download_vqgan,
    resolve_vqgan,
)
from .integrity import verify_all
from .listing import USUAL_CLIPS, ModelRow, list_models
from .registry import (
    VQGAN_MODELS,
    Located,
    UserModel,
    bundled_dir,
    checkpoints_dir,
    locate_vqgan,
    resolve_clip,
    user_models,
)

__all__ = [
    "USUAL_CLIPS",
    "VQGAN_MODELS",
    "Located",
    "ModelRow",
    "Progress",
    "ProgressFn",
    "UserModel",
    "VQGANFiles",
    "add_vqgan",
    "bundled_dir",
    "cache_loaded",
    "checkpoints_dir",
    "convert_to_safetensors",
    "download_clip",
    "download_vqgan",
    "list_models",
    "locate_vqgan",
    "resolve_clip",
    "resolve_vqgan",
    "user_models",
    "verify_all",
]
