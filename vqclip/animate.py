"""Zoom / pan / rotate animations: each frame starts from the previous one, warped and re-encoded by the VQGAN.

Frame 0 runs the config's `steps` from the usual start (random tokens or the init image); every later frame
warps the previous frame's image (an affine map), encodes it as its starting latent and runs
`animation.steps_per_frame` steps. A story (`a^b^c`, `keyframes`) is scheduled over frames, not steps: each
frame is optimised against the prompt of its segment, optionally crossfaded from the previous segment's over
`animation.blend` frames. `animate` yields frames and writes nothing; `run_animation` streams them to an mp4.
Each frame's Step carries the state the next frame starts from (its latent and the generator), so an interrupted
animation resumes from its last finished frame (`prepare_resume(folder, animation=True)`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from .config import AnimationConfig
from .errors import ConfigError
from .images import load_image
from .inits import INITS
from .memory import oom_advice
from .observe import Observer
from .optimize import Guide, LoopState, Step, optimize
from .outputs import slugify
from .prompts import PromptLoss
from .runner import Run, make_guides
from .validate import check_motion
from .writer import Layout, ResumeAt, RunResult, RunWriter, write_steps

__all__ = ["Motion", "animate", "frame_guides", "run_animation", "warp"]


@dataclass
class Motion:
    """The camera move applied between two frames."""

    zoom: float = 1.0  # scale per frame: >1 zooms in, <1 out
    rotate: float = 0.0  # degrees per frame, counter-clockwise on screen
    pan: tuple[float, float] = (0.0, 0.0)  # pixels per frame the content moves (right, down)

    def __post_init__(self):
        check_motion(self.zoom, self.rotate, self.pan)

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
    theta = torch.tensor(
        [[c, -s * h / w, -2 * m.pan[0] / w], [s * w / h, c, -2 * m.pan[1] / h]], dtype=image.dtype, device=image.device
    )
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, 3, h, w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def segment_guides(run: Run) -> list[tuple[int, str, list[Guide]]]:
    """(start frame, prompt text, guides) of every segment; a prompt that comes back is embedded once."""
    plan, embedded = run.plan, {}
    prompts = [plan.prompts] + [ps for _, ps in plan.story]
    for (_, text), ps in zip(plan.schedule, prompts):
        if text not in embedded:
            embedded[text] = make_guides(plan, run.models, [ps])
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
    mixed = [
        Guide(a.perceptor, [[_scaled(p, 1 - t) for p in a.targets[0]] + [_scaled(p, t) for p in b.targets[0]]])
        for a, b in zip(old, guides)
    ]
    return mixed, {"prompt": text, "blend": [[before, round(1 - t, 6)], [text, round(t, 6)]]}


def _scaled(loss: PromptLoss, factor: float) -> PromptLoss:
    return PromptLoss(loss.embed, loss.weight * factor, loss.stop)  # the same embedding, no CLIP call


def animate(run: Run) -> Iterator[Step]:
    """Yield Step(k) with frame k's image for k in 0..frames-1 (the last one final).

    `run` comes from `prepare_run(cfg, unit="frame")` (or `prepare_resume`: frames from the state's on); each
    Step's extras say which prompt the frame was optimised for.
    """
    cfg, plan, models, device = run.cfg, run.plan, run.models, run.device
    if plan.story and plan.unit != "frame":
        raise ConfigError("an animation's story counts frames; prepare its run with unit='frame'")
    a = cfg.animation
    motion = Motion.of(a)
    generators = [torch.Generator(device=device).manual_seed(int(cfg.seed))]
    segments = segment_guides(run)
    start = run.resume.loop if run.resume is not None else None
    if start is not None:
        z = start.z.to(device)
        for g, state in zip(generators, start.generators, strict=True):
            g.set_state(state)
    elif cfg.init_image:
        z = models.vqgan.encode(load_image(cfg.init_image, (plan.width, plan.height)).to(device) * 2 - 1)
    else:
        z = INITS[cfg.init](models.vqgan, plan.height, plan.width, generators)
    first = run.settings  # the device's fast path, as generate runs
    later = dataclasses.replace(first, steps=a.steps_per_frame)
    for k in range(start.step if start is not None else 0, a.frames):
        guides, used = frame_guides(segments, k, a.blend)
        *_, last = optimize(models.vqgan, guides, z, first if k == 0 else later, generators)
        state = None
        if k < a.frames - 1:  # the next frame's start, made before the frame is yielded so it travels with it
            with torch.no_grad():
                z = models.vqgan.encode(warp(last.image, motion) * 2 - 1)
            state = LoopState(k + 1, z, z, generators=[g.get_state() for g in generators])
        yield Step(k, last.image, last.loss, final=k == a.frames - 1, extras=used, state=state)


def run_animation(
    run: Run,
    save_frames: Optional[bool] = None,
    on_frame: Optional[Callable[[Step], None]] = None,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Stream the frames into <out>/<name>/animation.mp4 (and .gif), the last frame to final.png.

    Every PNG records the config (animation settings and schedule included), so `vqclip animate --from` any of
    them re-runs the animation and makes the same frames; a story adds the prompt each frame was optimised for.
    A resumed run continues in its folder and keeps saving frames if it did (`save_frames` None: as before).
    """
    cfg, saved = run.cfg, run.resume
    if save_frames is None:
        save_frames = bool(saved.meta.get("save_frames")) if saved is not None else False
    name = cfg.output.name or f"anim-{slugify(cfg.prompt or run.plan.schedule[0][1], 50)}-s{cfg.seed}"
    writer = RunWriter(
        cfg,
        run.plan,
        Path(cfg.output.dir),
        name,
        Layout.animation(cfg, save_frames),
        state_meta=lambda: run.state_meta(kind="animation", save_frames=save_frames),
        at=ResumeAt.of(saved) if saved is not None else None,
    )
    with oom_advice(run.work):  # the same advice as a still's run gives
        return write_steps(animate(run), [writer], on_frame, observers=observers)[0]
