"""vqclip: text-to-image generation by VQGAN+CLIP optimisation.

The Python API in a few names (imported on first use, so `import vqclip` and `vqclip --help` stay fast):

    import vqclip
    cfg = vqclip.resolve(["toy"], options={"prompt": "a blue square", "seed": 1})
    for step in vqclip.generate(cfg):      # the loop yields Steps and writes nothing
        ...
    picture = vqclip.image(cfg, progress=True)   # the final image as a PIL image, with a progress bar
    result = vqclip.run(cfg)               # or: frames, final.png and video in outputs/
    gen = vqclip.Generator()               # keeps the models loaded between calls: gen.image(cfg), gen.run(cfg)
"""

from __future__ import annotations

import importlib

from .version import __version__

# public name -> the module that defines it
_API = {
    "Config": "config",
    "resolve": "config",
    "generate": "api",
    "run": "api",
    "image": "api",
    "Generator": "api",
    "prepare_run": "runner",
    "prepare_resume": "runner",
    "Run": "runner",
    "ModelCache": "runner",
    "Step": "optimize",
    "RunResult": "writer",
    "Interrupted": "writer",
    "to_pil": "images",
    "load_image": "images",
    "VQClipError": "errors",
    "NotebookDisplay": "notebook",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'vqclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
