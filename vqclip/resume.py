"""Whether a saved state belongs to the run that resumes it, and what a state says about its run.

A state records its run (`state_meta`): the config, size, models' weight fingerprints, device type and kind. A
resumed run takes that config (`resume_config`), may change only where it runs (FREE_KEYS), and is refused in one
line that says what differs: before any model loads (`check_state`: kind, config, the folder's final.png, latent
size, device type) and once they have loaded (`check_models`: weights replaced under the same file names).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import torch
import yaml

from .config import Config, resolve, to_yaml
from .errors import UsageError
from .outputs import read_png_metadata
from .state import FORMAT, SIDECAR, SavedState, StateError
from .version import __version__

if TYPE_CHECKING:
    from .plan import Plan

__all__ = [
    "FREE_KEYS",
    "check_config",
    "check_fit",
    "check_models",
    "check_state",
    "config_differences",
    "model_fingerprints",
    "resume_config",
    "state_meta",
]

# what a resumed run may change: where it runs and where its files are, never what it computes
FREE_KEYS = frozenset({"device", "model.checkpoints_dir", "output.dir", "output.name", "output.save_state"})


def _tensor_sha(tensors: Iterable[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprints(vqgan: torch.nn.Module, perceptors: Sequence[torch.nn.Module]) -> dict:
    """Short hashes of the weights a run uses (the VQGAN's codebook and end layers, each CLIP's end layers): a
    state made with other weights is refused without hashing gigabyte files (~40 ms for the 16k codebook)."""

    def ends(m: torch.nn.Module) -> list[torch.Tensor]:
        params = list(m.parameters())
        return [params[0], params[-1]] if params else []

    return {"vqgan": _tensor_sha([vqgan.codebook, *ends(vqgan)]), "clip": [_tensor_sha(ends(p)) for p in perceptors]}


def state_meta(cfg: Config, plan: Plan, kind: str, fingerprints: dict, device: torch.device, **extra) -> dict:
    """The sidecar's description of the run a state belongs to; `extra` adds e.g. a batch job's id."""
    return {
        "format": FORMAT,
        "kind": kind,
        "unit": plan.unit,
        "prompt": cfg.prompt,
        "seed": cfg.seed,
        "config": to_yaml(cfg),
        "size": [plan.width, plan.height],
        "vqgan": plan.vqgan_name,
        "clip": plan.clip_specs,
        "models": fingerprints,
        "device": device.type,
        "vqclip_version": __version__,
        **extra,
    }


def _flat(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def config_differences(saved_yaml: str, yaml_now: str) -> list[tuple[str, object, object]]:
    """(key, value in the state, value now) for every key that changes what the run computes."""
    a, b = _flat(yaml.safe_load(saved_yaml) or {}), _flat(yaml.safe_load(yaml_now) or {})
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in FREE_KEYS and a.get(k) != b.get(k)]


def _describe(diffs: list[tuple[str, object, object]], first: str, second: str) -> str:
    shown = "; ".join(f"{k} is {a!r} {first}, {b!r} {second}" for k, a, b in diffs[:3])
    return shown + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")


def resume_config(saved: SavedState, options: Optional[dict] = None, sets: Sequence[str] = ()) -> Config:
    """The config of the run a state belongs to, with `options` and `--set`s on top (check_state refuses any
    that change what the run computes)."""
    try:
        return resolve((), saved.config, options or {}, sets)
    except UsageError as e:
        raise StateError(f"the config saved in {saved.folder / SIDECAR} cannot be read ({e})") from None


def check_state(saved: SavedState, cfg: Config, plan: Plan, kind: str, device: torch.device) -> None:
    """Refuse, before any model loads, a state that is not this run's: kind, config, final.png, size, device."""
    check_config(saved, cfg, kind)
    check_fit(saved, plan, device)


def check_config(saved: SavedState, cfg: Config, kind: str) -> None:
    """The kind of run, its config, and the folder's final.png must be the state's (needs no plan)."""
    where, meta = saved.folder, saved.meta
    if meta["kind"] != kind:
        command = "animate" if meta["kind"] == "animation" else "generate"
        raise StateError(
            f"{where} holds the state of {'an animation' if command == 'animate' else 'a still'}; "
            f"resume it with vqclip {command} --resume {where}"
        )
    diffs = config_differences(saved.config, to_yaml(cfg))
    if diffs:
        raise StateError(
            f"this run differs from the one saved in {where}: {_describe(diffs, 'there', 'here')}; "
            f"resume it with its own settings (only --device may change), or start a new run"
        )
    final = where / "final.png"
    if final.is_file():
        try:
            recorded = read_png_metadata(final).get("config")
        except OSError:
            recorded = None
        diffs = config_differences(recorded, saved.config) if recorded else []
        if diffs:
            raise StateError(
                f"the state in {where} belongs to another run than its final.png: "
                f"{_describe(diffs, 'in final.png', 'in the state')}"
            )


def check_fit(saved: SavedState, plan: Plan, device: torch.device) -> None:
    """The plan's latent (its VQGAN at its size) and the device type must be the state's."""
    where, meta = saved.folder, saved.meta
    f = plan.vqgan_spec.factor
    expected = [1, plan.vqgan_spec.embed_dim, plan.height // f, plan.width // f]
    if list(saved.loop.z.shape) != expected:
        raise StateError(
            f"the state in {where} holds a latent of {list(saved.loop.z.shape)[1:]} (channels, tokens "
            f"high, wide) but this run's VQGAN at {plan.width}x{plan.height} makes {expected[1:]}: "
            f"other models or another size than the state's"
        )
    if meta["device"] != device.type:
        raise StateError(
            f"the state in {where} was saved on {meta['device']}; resume it with --device "
            f"{meta['device']} (its random generators cannot continue on {device.type})"
        )
    size = torch.Generator(device=device).get_state().numel()
    if any(g.numel() != size for g in saved.loop.generators):
        raise StateError(
            f"the saved state in {where} is damaged (a random generator state of "
            f"{saved.loop.generators[0].numel()} bytes, not the {size} a {device.type} generator has); "
            f"it cannot be resumed, start the run again"
        )


def check_models(saved: SavedState, fingerprints: dict) -> None:
    """Refuse a state made with other model weights than the run's (files replaced under the same names)."""
    old = saved.meta["models"]
    if old.get("vqgan") != fingerprints["vqgan"]:
        raise StateError(
            f"the VQGAN {saved.meta.get('vqgan')} has other weights than the state in {saved.folder} "
            f"was made with (fingerprint {old.get('vqgan')}, now {fingerprints['vqgan']}); resume "
            f"with the model files it was made with"
        )
    for k, (a, b) in enumerate(zip(old.get("clip") or [], fingerprints["clip"])):
        if a != b:
            raise StateError(
                f"CLIP {saved.meta.get('clip', ['?'] * (k + 1))[k]} has other weights than the state "
                f"in {saved.folder} was made with (fingerprint {a}, now {b}); resume with the model "
                f"files it was made with"
            )
