"""Zoom / pan / rotate animations: each frame starts from the previous one, warped and re-encoded by the VQGAN.

Frame 0 runs the config's `steps` from the usual start (random tokens or the init image); every later frame
warps the previous frame's image (an affine map), encodes it as its starting latent and runs
`animation.steps_per_frame` steps. A story (`a^b^c`, `keyframes`) is scheduled over frames, not steps: each
frame is optimised against the prompt of its segment, optionally crossfaded from the previous segment's over
`animation.blend` frames. `animate` yields frames and writes nothing; `run_animation` streams them to an mp4.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from .config import AnimationConfig, Config, with_seed
from .errors import ConfigError
from .optimize import Guide, Step, optimize, random_latent
from .outputs import VideoWriter, save_png, slugify, unique_dir
from .pipeline import Models, Plan, check, load_image, make_guides, prepared_settings
from .prompts import PromptLoss
from .session import Interrupted, RunResult, metadata


@dataclass
class Motion:
    """The camera move applied between two frames."""

    zoom: float = 1.0  # scale per frame: >1 zooms in, <1 out
    rotate: float = 0.0  # degrees per frame, counter-clockwise on screen
    pan: tuple[float, float] = (0.0, 0.0)  # pixels per frame the content moves (right, down)

    def __post_init__(self):
        if not (self.zoom > 0 and math.isfinite(self.zoom)):
            raise ConfigError(f"zoom must be positive (1 keeps the size, 1.02 zooms in 2% a frame), got {self.zoom}")
        if len(self.pan) != 2 or not all(math.isfinite(v) for v in (self.rotate, *self.pan)):
            raise ConfigError(f"rotate must be a number and pan two numbers (right, down), got {self.rotate} and "
                              f"{list(self.pan)}")

    @classmethod
    def of(cls, cfg: AnimationConfig) -> "Motion":
        return cls(cfg.zoom, cfg.rotate, tuple(cfg.pan))


def warp(image: torch.Tensor, m: Motion) -> torch.Tensor:
    """Apply one frame's motion to images [B, 3, H, W]; the edges revealed by a zoom out or pan are mirrored."""
    b, _, h, w = image.shape
    a = torch.deg2rad(torch.tensor(m.rotate, dtype=torch.float64))
    c, s = float(torch.cos(a)) / m.zoom, float(torch.sin(a)) / m.zoom
    # output -> input sampling map in affine_grid's [-1, 1] coordinates, corrected for the aspect ratio so a
    # rotation stays a rotation on a non-square image
    theta = torch.tensor([[c, -s * h / w, -2 * m.pan[0] / w],
                          [s * w / h, c, -2 * m.pan[1] / h]], dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, 3, h, w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def check_animation(cfg: Config) -> Plan:
    """`pipeline.check` with the story over frames, plus the motion and the blend: all before a model loads."""
    Motion.of(cfg.animation)
    plan = check(cfg, unit="frame")
    blend, ends = cfg.animation.blend, [start for start, _ in plan.schedule[1:]] + [cfg.animation.frames]
    for (start, text), end in zip(plan.schedule[1:], ends[1:]):
        if blend >= end - start:
            raise ConfigError(f"blend of {blend} frames does not fit the segment {text!r} (frames {start}-{end - 1}); "
                              f"lower --blend or space the prompts further apart")
    return plan


def segment_guides(plan: Plan, models: Models) -> list[tuple[int, str, list[Guide]]]:
    """(start frame, prompt text, guides) of every segment; a prompt that comes back is embedded once."""
    embedded: dict[str, list[Guide]] = {}
    prompts = [plan.prompts] + [ps for _, ps in plan.story]
    for (_, text), ps in zip(plan.schedule, prompts):
        if text not in embedded:
            embedded[text] = make_guides(plan, models, [ps])
    return [(start, text, embedded[text]) for start, text in plan.schedule]


def frame_guides(segments: list[tuple[int, str, list[Guide]]], k: int, blend: int) -> tuple[list[Guide], dict]:
    """The guides of frame k and what they are: its segment's prompt, crossfaded from the one before over `blend`
    frames (the previous prompt's loss weights scaled by 1 - t, the new one's by t)."""
    j = max(i for i, (start, _, _) in enumerate(segments) if start <= k)
    start, text, guides = segments[j]
    t = (k - start + 1) / (blend + 1)
    if j == 0 or t >= 1:
        return guides, {"prompt": text}
    _, before, old = segments[j - 1]
    mixed = [Guide(a.perceptor, [[_scaled(p, 1 - t) for p in a.targets[0]] + [_scaled(p, t) for p in b.targets[0]]])
             for a, b in zip(old, guides)]
    return mixed, {"prompt": text, "blend": [[before, round(1 - t, 6)], [text, round(t, 6)]]}


def _scaled(loss: PromptLoss, factor: float) -> PromptLoss:
    return PromptLoss(loss.embed, loss.weight * factor, loss.stop)  # the same embedding, no CLIP call


def animate(cfg: Config, plan: Plan, models: Models, device: torch.device) -> Iterator[Step]:
    """Yield Step(k) with frame k's image for k in 0..frames-1 (the last one final).

    `plan` comes from `check_animation`; each Step's extras say which prompt the frame was optimised for.
    """
    if plan.story and plan.unit != "frame":
        raise ConfigError("an animation's story counts frames; make its plan with check_animation, not check")
    a = cfg.animation
    motion = Motion.of(a)
    generators = [torch.Generator(device=device).manual_seed(int(cfg.seed))]
    segments = segment_guides(plan, models)
    if cfg.init_image:
        z = models.vqgan.encode(load_image(cfg.init_image, (plan.width, plan.height)).to(device) * 2 - 1)
    else:
        z = random_latent(models.vqgan, plan.height, plan.width, generators)
    first = prepared_settings(cfg, models, device)  # the device's fast path, as generate runs
    later = dataclasses.replace(first, steps=a.steps_per_frame)
    for k in range(a.frames):
        guides, used = frame_guides(segments, k, a.blend)
        *_, last = optimize(models.vqgan, guides, z, first if k == 0 else later, generators)
        yield Step(k, last.image, last.loss, final=k == a.frames - 1, extras=used)
        with torch.no_grad():
            z = models.vqgan.encode(warp(last.image, motion) * 2 - 1)


def run_animation(cfg: Config, plan: Plan, models: Models, device: torch.device, save_frames: bool = False,
                  on_frame: Optional[Callable[[Step], None]] = None) -> RunResult:
    """Stream the frames into <out>/<name>/animation.mp4 (and .gif), the last frame to final.png.

    Every PNG records the config (animation settings and schedule included), so `vqclip animate --from` any of
    them re-runs the animation and makes the same frames; a story adds the prompt each frame was optimised for.
    """
    cfg = with_seed(cfg)
    cfg.width, cfg.height = plan.width, plan.height
    name = cfg.output.name or f"anim-{slugify(cfg.prompt or plan.schedule[0][1], 50)}-s{cfg.seed}"
    folder = unique_dir(Path(cfg.output.dir), name)
    video = VideoWriter(folder / "animation.mp4", cfg.output.fps, cfg.output.gif)
    # marks the PNGs as frames of an animation (generate --from refuses them) and says how they were made
    extra = {"animation": json.dumps(dataclasses.asdict(cfg.animation))}
    start, last = time.perf_counter(), None
    try:
        for step in animate(cfg, plan, models, device):
            last = step
            video.add(step.image[0])
            if save_frames:
                (folder / "frames").mkdir(exist_ok=True)
                save_png(step.image[0], folder / "frames" / f"frame_{step.i:05d}.png",
                         _frame_metadata(cfg, plan, step, "frame", extra))
            if on_frame is not None:
                on_frame(step)
    except KeyboardInterrupt:
        raise Interrupted(_finish(cfg, plan, folder, last, video, start, extra, "interrupted")) from None
    except BaseException:
        video.abort()
        raise
    return _finish(cfg, plan, folder, last, video, start, extra, "complete")


def _frame_metadata(cfg: Config, plan: Plan, step: Step, status: str, extra: dict) -> dict:
    meta = {**metadata(cfg, plan, step.i, status, float(step.loss[0])), **extra}
    if plan.story:  # what the loop was given for this frame, rather than what the schedule says it should be
        meta["active_prompt"] = step.extras["prompt"]
        if "blend" in step.extras:
            meta["blend"] = json.dumps(step.extras["blend"])
    return meta


def _finish(cfg, plan, folder: Path, last: Optional[Step], video: VideoWriter, start: float, extra: dict,
            status: str) -> RunResult:
    image, loss = None, None
    if last is not None:
        loss = float(last.loss[0])
        image = save_png(last.image[0], folder / "final.png", _frame_metadata(cfg, plan, last, status, extra))
    videos = video.close()
    return RunResult(image, folder, status, last.i if last else 0, loss, time.perf_counter() - start, videos)
