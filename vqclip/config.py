"""The run schema as nested dataclasses; presets in configs/*.yaml are partial overrides of it.

Resolution order (later wins): dataclass defaults <- presets <- a PNG's recorded config (`--from`)
<- explicit options <- `--set key=value` overrides. OmegaConf checks every key and type against the schema.
"""

# size: the schema is one commented field per config key (~130 lines) next to the merge that checks them
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, UnknownNameError
from .validate import validate


@dataclass
class ModelConfig:
    vqgan: str = "vqgan_imagenet_f16_16384"  # registry name, or a taming yaml (ckpt beside it, same stem)
    vqgan_ckpt: Optional[str] = None  # explicit checkpoint when it does not sit beside the yaml
    # open_clip specs: NAME, NAME:PRETRAINED_TAG, NAME:/path/to/weights, or local-dir:DIR; several guide together
    clip: List[str] = field(default_factory=lambda: ["ViT-B-32-quickgelu:openai"])
    checkpoints_dir: Optional[str] = None  # default: $VQCLIP_CHECKPOINTS, else the project's checkpoints/


@dataclass
class OptimConfig:
    name: str = "adam"  # see vqclip.optimize.OPTIMIZERS
    lr: float = 0.1
    weight_decay: float = 0.0
    schedule: str = "constant"  # the lr over the run: see vqclip.schedules.SCHEDULES (drop75 is pixray's)
    ema: float = 0.0  # the final image is decoded from an average of z with this decay (0: off; pytti 0.99)


@dataclass
class CutoutConfig:
    cutn: int = 32  # augmented crops scored by CLIP per step
    cut_pow: float = 1.0  # >1 favours small crops (detail), <1 large ones (composition)
    augments: List[str] = field(default_factory=lambda: ["flip", "affine", "noise"])
    method: str = "crops"  # crops, overview (a quarter show the whole image) or pooled: vqclip.cutouts.CUTOUT_METHODS


@dataclass
class OutputConfig:
    dir: str = "outputs"
    name: Optional[str] = None  # run folder name; default derives from the prompt and seed
    save_every: int = 50  # frame interval in steps; 0 saves no intermediate frames
    video: bool = False  # progress mp4 of the saved frames (imageio-ffmpeg)
    gif: bool = False
    fps: int = 10
    # the run's state (vqclip.state) beside every saved frame too, not only on an interrupt: a crash or kill -9
    # then resumes from the last frame (`--resume`); one state per run folder, the latest
    save_state: bool = False


@dataclass
class AnimationConfig:
    """`vqclip animate`: how many frames and the camera move between them (generate and batch ignore it)."""

    frames: int = 60
    steps_per_frame: int = 10  # steps of every frame after the first, which runs `steps`
    zoom: float = 1.02  # scale per frame: >1 zooms in, <1 out
    rotate: float = 0.0  # degrees per frame, counter-clockwise
    pan: List[float] = field(default_factory=lambda: [0.0, 0.0])  # pixels per frame the picture moves: right, down
    blend: int = 0  # story mode: frames over which each new prompt fades in (0: a cut)


@dataclass
class SpeedConfig:
    """The fast path's switches (see vqclip.fastpath); `reference()` is the fp32 eager path speed is judged against."""

    precision: str = "auto"  # auto: bf16 autocast of decoder + CLIP on CUDA and AMX CPUs, fp32 elsewhere; or fp32, bf16
    channels_last: Optional[bool] = None  # None: where it pays (CUDA)
    fused_optim: Optional[bool] = None  # None: a fused optimiser step on CUDA
    compile: bool = False  # torch.compile the decoder and CLIP's image tower: slower first step, faster after
    compile_mode: str = "default"  # with compile: default, reduce-overhead, max-autotune (see COMPILE_MODES)
    checkpoint_pixels: int = 512 * 512  # recompute the high-res decoder blocks above this many pixels; 0: never
    fused_attention: bool = True  # decoder attention via fused SDPA, CLIP's tower via vqclip.clip_fused (same maths)
    threads: int = 0  # CPU threads; 0: OMP_NUM_THREADS if set, else the cores other processes leave idle

    @classmethod
    def reference(cls) -> "SpeedConfig":
        return cls(
            precision="fp32",
            channels_last=False,
            fused_optim=False,
            compile=False,
            checkpoint_pixels=0,
            fused_attention=False,
        )


@dataclass
class Config:
    prompt: str = ""  # "text:weight:stop|text2:weight" (see vqclip.prompts)
    image_prompts: List[str] = field(default_factory=list)  # "path[:weight]"
    init_image: Optional[str] = None  # starting image, encoded through the VQGAN encoder
    init: str = "tokens"  # how z starts without an init image: see vqclip.inits.INITS
    init_weight: float = 0.0  # pull towards the initial latent
    init_schedule: str = "constant"  # the pull over the run, e.g. linear: decays to 0 (vqclip.schedules)
    # nerdyrodent's noise prompts: a random target embedding per seed, with the weight beside it (negative: away)
    noise_prompt_seeds: List[int] = field(default_factory=list)
    noise_prompt_weights: List[float] = field(default_factory=list)
    losses: Dict[str, float] = field(default_factory=dict)  # image losses by name -> weight: tv, saturation
    width: int = 256
    height: int = 256
    steps: int = 300
    seed: Optional[int] = None  # None draws one; the drawn seed is recorded in every output
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    # story mode (vqclip.story) over steps, or over frames in `vqclip animate`: a prompt "a^b^c" switches every
    # N steps (frames); 0 splits them evenly. keyframes: step (frame) -> the prompts from there on
    story_every: int = 0
    keyframes: Dict[int, str] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cutouts: CutoutConfig = field(default_factory=CutoutConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    animation: AnimationConfig = field(default_factory=AnimationConfig)


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def preset_dirs() -> list[Path]:
    """Where presets are looked up: $VQCLIP_CONFIGS, the source tree's configs/, the wheel's copy."""
    dirs = [Path(p) for p in os.environ.get("VQCLIP_CONFIGS", "").split(os.pathsep) if p]
    dirs += [_project_root() / "configs", Path(__file__).resolve().parent / "_configs"]
    return [d for d in dirs if d.is_dir()]


def list_presets() -> list[str]:
    return sorted({p.stem for d in preset_dirs() for p in d.glob("*.yaml")})


def preset_path(name: str) -> Path:
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name)
    for d in preset_dirs():
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    raise UnknownNameError("preset", name, list_presets())


def _keys(node, prefix="") -> list[str]:
    out = []
    for k, v in node.items():
        out.append(prefix + k)
        if OmegaConf.is_dict(v):
            out += _keys(v, prefix + k + ".")
    return out


def _group_given_a_value(base, other, prefix: str = "") -> None:
    """`--set optim=3`: a group of keys given one value is named, with its keys (OmegaConf's own message is None)."""
    if not (OmegaConf.is_dict(base) and OmegaConf.is_dict(other)):
        return
    for key in other:
        if key in base and OmegaConf.is_dict(base[key]) and key != "keyframes":
            if not OmegaConf.is_dict(other[key]):
                keys = ", ".join(f"{prefix}{key}.{k}" for k in base[key])
                raise ConfigError(
                    f"{prefix}{key} is a group of keys ({keys}); set one of them, "
                    f"e.g. {prefix}{key}.{next(iter(base[key]))}=..."
                )
            _group_given_a_value(base[key], other[key], f"{prefix}{key}.")


def _merge(base, other: Any, source: str):
    _group_given_a_value(base, other)
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        if "not in struct" in str(e) or "Key" in type(e).__name__ and "Missing" not in str(e):
            raise _unknown_key(key, source) from None
        message = str(getattr(e, "msg", None) or e).strip().splitlines() or [type(e).__name__]
        raise ConfigError(f"bad value for {key or 'config'} in {source}: {message[0]}") from None
    except (TypeError, ValueError) as e:  # OmegaConf raises these too, e.g. merging a list into a mapping
        raise ConfigError(f"bad value in {source}: {str(e).strip()[:120] or type(e).__name__}") from None


def _unknown_key(key: str, source: str) -> UnknownNameError:
    """An unknown key: the closest settable keys, and the keys beside it (its section's, or the top level's)."""
    keys = _keys(OmegaConf.structured(Config))
    parent = key.rpartition(".")[0] if key.rpartition(".")[0] in keys else ""
    siblings = ", ".join(k for k in keys if k.rpartition(".")[0] == parent)
    leaves = [k for k in keys if not any(other.startswith(k + ".") for other in keys)]
    see = f"the keys of {parent}: {siblings}" if parent else f"the top-level keys: {siblings}"
    return UnknownNameError("config key", key, leaves, see=see, where=source)


def _literal(data: Any, source: str):
    """Parse user data (YAML text or a dict) into a node whose strings are taken literally.

    "${...}" stays text: an interpolation could read environment variables, and a shared PNG's recorded
    config would then copy them into the next run's outputs. Broken YAML or a non-mapping is a ConfigError.
    """
    try:
        node = OmegaConf.create(data)
    except Exception as e:  # noqa: BLE001 - yaml errors come in many types
        raise ConfigError(
            f"{source} is not valid YAML ({(str(e).strip().splitlines() or [type(e).__name__])[0]})"
        ) from None
    if not OmegaConf.is_dict(node):
        raise ConfigError(f"{source} must be a mapping of config keys, not a list or a value")
    return OmegaConf.create(_escape(OmegaConf.to_container(node, resolve=False)))


def parse_dotlist(items: Iterable[str]) -> list[str]:
    out = []
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set optim.lr=0.05)")
        out.append(item)
    return out


def resolve(
    presets: Iterable[str] = (),
    base_yaml: Optional[str] = None,
    options: Optional[dict] = None,
    overrides: Iterable[str] = (),
) -> Config:
    """Build a validated Config from presets, a recorded config, option values and key=value overrides."""
    cfg = OmegaConf.structured(Config)
    for name in presets:
        path = preset_path(name)
        try:
            data = OmegaConf.load(path)
        except Exception as e:  # noqa: BLE001 - yaml errors come in many types
            raise ConfigError(f"preset {path} is not valid YAML: {e}") from None
        cfg = _merge(cfg, data, f"preset {name!r}")
    if base_yaml is not None:
        cfg = _merge(cfg, _literal(base_yaml, "the recorded config"), "the recorded config")
    if options:
        cfg = _merge(cfg, _literal(_nest(options), "the options"), "the options")
    dotlist = parse_dotlist(overrides)
    if dotlist:
        try:
            data = numbered_keyframes(OmegaConf.to_container(OmegaConf.from_dotlist(dotlist)), "--set")
            cfg = _merge(cfg, _literal(data, "--set"), "--set")
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"cannot parse --set {dotlist}: {e}") from None
    try:
        config: Config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        raise ConfigError(f"bad value for {key}: {str(e.msg if hasattr(e, 'msg') else e).splitlines()[0]}") from None
    validate(config)  # values OmegaConf's types cannot express: ranges, known names, finite numbers
    return config


def numbered_keyframes(data: dict, source: str) -> dict:
    """Keyframe keys as numbers: `--set keyframes.150=...` and JSON jobs give them as text."""
    given = data.get("keyframes")
    if given is not None and not isinstance(given, dict):
        raise ConfigError(
            f"{source}: keyframes map step (or frame) numbers to prompts, got {given!r:.40}; "
            f"e.g. {{0: a seed, 150: a sapling}}"
        )
    if not isinstance(given, dict):
        return data
    keyframes = {}
    for key, text in given.items():
        try:
            # a key with nothing after `=` reads as None: keep it as an empty prompt, which story mode names
            keyframes[int(key)] = "" if text is None else text
        except ValueError:
            raise ConfigError(
                f"{source}: keyframes map step (or frame) numbers to prompts, got {key!r}; "
                f"e.g. {{0: a seed, 150: a sapling}}"
            ) from None
    return {**data, "keyframes": keyframes}


def _escape(value: Any) -> Any:
    """Escape "${" in option strings so OmegaConf keeps them as text."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape(v) for v in value]
    return value


def _nest(flat: dict) -> dict:
    """{"optim.lr": 0.1} -> {"optim": {"lr": 0.1}}; None values are dropped (option not given)."""
    out: dict = {}
    for key, value in flat.items():
        if value is None:
            continue
        node = out
        *parents, leaf = key.split(".")
        for k, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):  # {"optim": 3, "optim.lr": 0.1}: a value and a group at once
                raise ConfigError(
                    f"{'.'.join(parents[: k + 1])} is given as a value and as a group of keys ({key}); give one of them"
                )
        if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
            raise ConfigError(f"{key} is given as a value and as a group of keys; give one of them")
        node[leaf] = value
    return out


def with_seed(cfg: Config) -> Config:
    """Draw a seed when none is set, so every output records the one it used."""
    if cfg.seed is None:
        cfg.seed = secrets.randbelow(2**31)
    return cfg


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
