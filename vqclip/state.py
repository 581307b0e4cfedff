"""A run's saved state on disk, so `--resume` continues an interrupted run exactly where it stopped.

A run folder holds at most one state, its latest: `state-NNNNN-<hash>.safetensors` (the loop's tensors: the
latent, z_orig, the optimiser's moments, optim.ema's average, every generator's state; see `optimize.LoopState`)
and `state.json`, its sidecar (the run's config, size, models, device, step and the tensors file's SHA-256). The
tensors file is written first and the sidecar renamed over the old one last, so a kill at any moment leaves the old
state or the new one, never a mix. Never pickle: safetensors holds tensors only. Nothing read is trusted before it
is checked: hashes, names, dtypes, shapes and finite values here (`read_state`), and whether it is the resuming run's
in vqclip.resume.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

from .errors import UsageError
from .optimize import LoopState
from .outputs import write_durably
from .version import __version__

__all__ = ["FORMAT", "SIDECAR", "SavedState", "StateError", "StateWriter", "read_state", "remove_state", "write_state"]

FORMAT = "vqclip-state/1"
SIDECAR = "state.json"
_TENSORS = re.compile(r"state-\d{5,}-[0-9a-f]{12}\.safetensors")
_NEEDED = {
    "kind": str,
    "unit": str,
    "step": int,
    "config": str,
    "device": str,
    "models": dict,
    "tensors": str,
    "tensors_sha256": str,
    "size": list,
}


class StateError(UsageError):
    """A saved state that cannot be resumed: missing, damaged, or made by another run; the message says what."""


@dataclass
class SavedState:
    """A state read back and checked: its folder, its sidecar and the loop's state (tensors on the CPU)."""

    folder: Path
    meta: dict
    loop: LoopState

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def config(self) -> str:
        return self.meta["config"]

    @property
    def resumed(self) -> list[int]:
        """The steps (frames) this run was resumed from before, oldest first."""
        return [int(s) for s in self.meta.get("resumed", [])]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_state(folder: Path, state: LoopState, meta: dict) -> Path:
    """Write one image's state into its run folder atomically (tensors first, the sidecar last); its path."""
    folder = Path(folder)
    tensors = {
        "z": state.z,
        "z_orig": state.z_orig,
        **{f"optim.{k}": v for k, v in state.optim.items()},
        **{f"generator.{i}": g for i, g in enumerate(state.generators)},
        **({"ema": state.ema} if state.ema is not None else {}),
    }
    # copies: safetensors refuses tensors that share memory (an animation's z is its z_orig)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    config_sha = _sha(meta["config"].encode())
    from safetensors.torch import save

    data = save(tensors, metadata={"format": FORMAT, "step": str(state.step), "config_sha256": config_sha})
    digest = _sha(data)
    name = f"state-{state.step:05d}-{digest[:12]}.safetensors"
    if not (folder / name).is_file():  # the same name holds the same bytes: nothing to write
        write_durably(folder / name, lambda f: f.write(data))
    sidecar = {
        **meta,
        "step": state.step,
        "tensors": name,
        "tensors_sha256": digest,
        "config_sha256": config_sha,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n"
    path = write_durably(folder / SIDECAR, lambda f: f.write(text), "w", encoding="utf-8")
    for old in folder.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


class StateWriter:
    """Writes one run folder's states in order on a background thread, so the loop pays a hand-off rather than the
    two fsyncs (0.5 ms on a quiet disk, 15-20 ms measured on this shared one). At most one write is in flight."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Future] = None

    def submit(self, state: LoopState, meta: dict) -> None:
        """Write in the background (a frame's state); the snapshot's tensors are never changed, so sharing is safe."""
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vqclip-state")
        self._pending = self._pool.submit(write_state, self.folder, state, meta)

    def wait(self) -> None:
        """Until the write in flight is on disk (raising its error); an interrupt while waiting leaves it pending."""
        if self._pending is not None:
            try:
                self._pending.result()
            finally:
                if self._pending.done():
                    self._pending = None

    def write(self, state: LoopState, meta: dict) -> Path:
        """Write now, after the write in flight: an interrupt's state, which must be on disk when the run ends."""
        self.wait()
        return write_state(self.folder, state, meta)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


def remove_state(folder: Path) -> None:
    """A finished run needs no state: drop the sidecar first (then no state is found), then the tensors."""
    (Path(folder) / SIDECAR).unlink(missing_ok=True)
    for old in Path(folder).glob("state-*.safetensors"):
        old.unlink(missing_ok=True)


def read_state(folder: Path) -> SavedState:
    """The state saved in a run folder, checked for damage (hashes, names, dtypes, shapes, finite values)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StateError(
            f"{folder} is not a folder; --resume takes the folder of an interrupted run, e.g. outputs/<run>"
        )
    if not (folder / SIDECAR).is_file():
        raise StateError(
            f"{folder} holds no saved state ({SIDECAR}); a run saves one when it is interrupted "
            f"(Ctrl-C), or at every saved frame with --save-state"
        )

    def damaged(what: str) -> StateError:
        return StateError(f"the saved state in {folder} is damaged ({what}); it cannot be resumed, start the run again")

    try:
        meta = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged(f"{SIDECAR} is not readable JSON: {type(e).__name__}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise StateError(
            f"{folder / SIDECAR} is not a vqclip {FORMAT} state (format {found!r}); it cannot be "
            f"resumed by vqclip {__version__}"
        )
    for key, kind in _NEEDED.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise damaged(f"{SIDECAR} has no valid {key!r}")
    name = meta["tensors"]
    if not _TENSORS.fullmatch(name):  # a plain name in the folder: never a path that points elsewhere
        raise damaged(f"{SIDECAR} names an unexpected tensors file {name!r}")
    try:
        data = (folder / name).read_bytes()
    except OSError:
        raise damaged(f"its tensors file {name} is missing or unreadable") from None
    if _sha(data) != meta["tensors_sha256"]:
        raise damaged(f"{name} does not match the SHA-256 in {SIDECAR}: a truncated or altered file")
    try:
        from safetensors.torch import load

        tensors = load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds for a bad file
        raise damaged(f"{name} is not a safetensors file: {type(e).__name__}") from None
    if header.get("config_sha256") != _sha(meta["config"].encode()):
        raise StateError(
            f"the config in {folder / SIDECAR} was edited after the state was saved (it no longer "
            f"matches the tensors file); restore it, or start a new run"
        )
    if header.get("step") != str(meta["step"]):
        raise damaged(f"{SIDECAR} says step {meta['step']} but {name} holds step {header.get('step')}")
    return SavedState(folder, meta, _loop_state(tensors, meta["step"], damaged))


def _loop_state(tensors: dict, step: int, damaged) -> LoopState:
    """The tensors as a LoopState, if they have the shapes and types one image's state has."""
    z, z_orig = tensors.get("z"), tensors.get("z_orig")
    if (
        z is None
        or z_orig is None
        or z.dtype != torch.float32
        or z.dim() != 4
        or z.shape[0] != 1
        or z_orig.shape != z.shape
        or z_orig.dtype != z.dtype
    ):
        raise damaged("no one-image float32 latent z and z_orig of one shape")
    optim = {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")}
    generators = []
    while f"generator.{len(generators)}" in tensors:
        generators.append(tensors[f"generator.{len(generators)}"])
    ema = tensors.get("ema")  # optim.ema's average: like z
    if ema is not None and (ema.dtype != z.dtype or ema.shape != z.shape):
        raise damaged("an average of z (ema) of another shape or type than the latent")
    expected = {
        "z",
        "z_orig",
        *(f"optim.{k}" for k in optim),
        *(f"generator.{i}" for i in range(len(generators))),
        *(["ema"] if ema is not None else []),
    }
    if (
        set(tensors) != expected
        or len(generators) != 1
        or generators[0].dtype != torch.uint8
        or generators[0].dim() != 1
    ):
        raise damaged(f"unexpected tensors {sorted(set(tensors) ^ expected)} or generator states")
    if any(not v.is_floating_point() or not (v.dim() == 0 or v.shape == z.shape) for v in optim.values()):
        raise damaged("optimiser state of another shape than the latent")
    if not all(torch.isfinite(t).all() for t in (z, z_orig, *optim.values(), *([ema] if ema is not None else []))):
        raise damaged("values that are not finite")
    return LoopState(step, z, z_orig, optim, generators, ema)
