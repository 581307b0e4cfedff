"""vqclip: text-to-image generation by VQGAN+CLIP optimisation."""

__version__ = "0.1.0"
