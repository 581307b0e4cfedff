r"""Prompt parsing ("text:weight:stop|...") and the loss of one prompt against image embeddings.

The colon rule: a prompt is `text[:weight[:stop]]`, and only a plain decimal number after the text's last colon is a
weight (then a stop). That colon is text, not a separator, when
- it sits between two digits: "a clock at 12:30", "aspect 16:9" (write "12:30 :2" to weight such a text);
- it follows a URL's host and an integer comes after it: "https://example.com:8080" (a port);
- it is escaped: "a\:2" is the text "a:2", weight 1 (`\:` is always a plain colon).
Any other colon is text too ("a photo: by x", "C:\img.png"). A weight above LARGE_WEIGHT is warned about.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from .errors import PromptError
from .ops import replace_grad, spherical_dist
from .validate import MAX_WEIGHT

log = logging.getLogger("vqclip")

# a plain decimal number: "inf", "nan" and "1e5" style words in a text are not weights
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_COLON = re.compile(r"(?<!\\):")  # a colon that is not escaped as \:
_URL_HOST = re.compile(r"(^|\s)[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+$")  # "https://example.com" with no path yet
LARGE_WEIGHT = 10.0  # most prompts weigh 0.1 to 5; 30 is usually "12:30" misread, so it is pointed out


@dataclass(frozen=True)
class Prompt:
    text: str
    weight: float = 1.0
    stop: float = -math.inf


def _is_number(s: str) -> bool:
    return bool(_NUMBER.match(s))


def _separates(text: str, field: str) -> bool:
    """Whether the colon between `text` and the numeric `field` after it starts the weights (else it is text)."""
    if text[-1:].isdigit() and field[:1].isdigit():  # "12:30", "16:9": a time or a ratio
        return False
    return not (_URL_HOST.search(text) and field.strip().isdigit())  # "https://host:8080": a port


def parse_prompt(spec: str) -> Prompt:
    """Split "text[:weight[:stop]]" by the colon rule (see the module's docstring): "at 12:30" stays whole."""
    parts = _COLON.split(spec)
    numbers: list[float] = []
    for n in (2, 1):  # the longest numeric tail whose first colon separates the text from the weight
        if len(parts) > n and all(map(_is_number, parts[-n:])) and _separates(":".join(parts[:-n]), parts[-n]):
            numbers, tail, parts = [float(p) for p in parts[-n:]], parts[-n:], parts[:-n]
            break
    raw = ":".join(parts)
    text = raw.replace("\\:", ":").strip()
    if not text:
        raise PromptError(f"prompt {spec!r} has no text; write it as 'text', 'text:weight' or 'text:weight:stop'")
    if not all(math.isfinite(n) for n in numbers):
        raise PromptError(f"prompt {spec!r} has a weight or stop too large to be a number; use e.g. 'text:1.5:0.8'")
    if numbers and abs(numbers[0]) > MAX_WEIGHT:  # 1e308 is finite, but every loss it weighs overflows to inf
        raise PromptError(
            f"prompt {spec!r} has weight {numbers[0]:g}; use a weight between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}"
        )
    if numbers and numbers[0] == 0:
        raise PromptError(f"prompt {spec!r} has weight 0; use a positive weight, or a negative one to push away")
    if numbers and abs(numbers[0]) > LARGE_WEIGHT:
        log.warning(
            f"prompt {spec.strip()!r} has weight {numbers[0]:g}, unusually large (most are 0.1 to 5); if the "
            f"number belongs to the text, escape its colon: '{(raw + chr(92) + ':' + ':'.join(tail)).strip()}'"
        )
    return Prompt(text, *numbers)


def parse_prompts(text: str) -> list[Prompt]:
    """Parse "a:1|b:-0.5" into prompts; blank pieces are refused rather than guessed at."""
    if not text or not text.strip():
        raise PromptError('the prompt is empty; give some text, e.g. vqclip generate "a red circle"')
    pieces = text.split("|")
    if any(not p.strip() for p in pieces):
        raise PromptError(f"prompt {text!r} has an empty part between '|' separators; remove the extra '|'")
    return [parse_prompt(p) for p in pieces]


def split_path_weight(spec: str) -> tuple[str, float]:
    """ "path[:weight]" for image prompts; a drive letter or a colon in a file name stays in the path."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and _is_number(tail):
        return head, float(tail)
    return spec, 1.0


class PromptLoss(nn.Module):
    """Spherical distance of image embeddings to one target embedding, signed by weight, floored by stop."""

    def __init__(self, embed: torch.Tensor, weight: float = 1.0, stop: float = -math.inf):
        super().__init__()
        self.register_buffer("embed", embed.detach().reshape(1, -1))
        self.weight = float(weight)
        self.stop = float(stop)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """image_embeds [..., N, D] -> loss [...] (mean over the N cutouts)."""
        dists = spherical_dist(image_embeds, self.embed) * math.copysign(1.0, self.weight)
        if math.isfinite(self.stop):
            # the value stays the raw distance; the gradient stops once the distance falls below stop
            dists = replace_grad(dists, torch.clamp(dists, min=self.stop))
        return abs(self.weight) * dists.mean(dim=-1)
