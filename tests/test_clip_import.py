"""vqclip.clip_import: open_clip comes in without timm, and timm comes in for the models whose towers it builds.

Each case runs in a fresh interpreter: this test process has imported open_clip (and timm) long ago.
"""

import json
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest

from vqclip.clip_import import needs_timm

ROOT = Path(__file__).resolve().parents[1]
TOY_CLIP = ROOT / "checkpoints" / "toy" / "clip"


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def _timm_tower_dir(tmp_path: Path) -> Path:
    """A local-dir CLIP whose vision tower is timm's tiny test ViT (random weights, nothing downloaded)."""
    folder = tmp_path / "timm-clip"
    folder.mkdir()
    cfg = json.loads((TOY_CLIP / "open_clip_config.json").read_text())
    cfg["model_cfg"]["vision_cfg"] = {
        "timm_model_name": "test_vit",
        "timm_model_pretrained": False,
        "timm_pool": "avg",
        "timm_proj": "linear",
        "image_size": 160,
    }
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    return folder


def test_a_model_without_a_timm_tower_loads_without_importing_timm():
    out = _run(
        "import sys\n"
        "from vqclip.clip import load_clip\n"
        f"p = load_clip('local-dir:{TOY_CLIP}')\n"
        "print(p.input_size, 'timm' in sys.modules)\n"
    )
    assert out == "32 False"


@pytest.mark.parametrize("build", ["local-dir", "name"])
def test_a_model_with_a_timm_tower_gets_timm_when_it_is_built(tmp_path, build):
    """The class of models vqclip holds timm back from: each way of naming one (a local-dir folder, a registered
    name) builds its timm tower through vqclip's loader."""
    folder = _timm_tower_dir(tmp_path)
    if build == "local-dir":
        setup, spec = "", f"local-dir:{folder}:random"
    else:
        (tmp_path / "arch").mkdir()
        cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
        (tmp_path / "arch" / "toy-timm.json").write_text(json.dumps(cfg))
        setup, spec = f"register_clip_architectures({str(tmp_path / 'arch')!r})\n", "toy-timm:random"
    out = _run(
        "import sys\n"
        "from vqclip.clip import load_clip, register_clip_architectures\n"
        f"{setup}"
        "assert 'timm' not in sys.modules\n"
        f"p = load_clip({spec!r})\n"
        "print(type(p.model.visual).__name__, p.input_size, 'timm' in sys.modules)\n"
    )
    assert out == "TimmModel 160 True"


def test_timm_is_not_held_back_from_a_process_that_imported_it_first():
    out = _run(
        "import sys, timm\n"
        "from vqclip.clip_import import import_open_clip\n"
        "oc = import_open_clip()\n"
        "print(sys.modules['open_clip.timm_model'].timm is timm)\n"
    )
    assert out == "True"


@pytest.mark.parametrize(
    "name, expected",
    [("ViT-B-32", False), ("ViT-B-32-quickgelu", False), ("RN50", False), ("convnext_base", True)],
)
def test_needs_timm_reads_open_clips_own_configs(name, expected):
    assert needs_timm(open_clip, name) is expected


def test_needs_timm_on_folders_and_hub_names(tmp_path):
    assert needs_timm(open_clip, f"local-dir:{TOY_CLIP}") is False
    assert needs_timm(open_clip, f"local-dir:{_timm_tower_dir(tmp_path)}") is True
    assert needs_timm(open_clip, f"local-dir:{tmp_path / 'missing'}") is False  # open_clip reports the folder
    assert needs_timm(open_clip, "hf-hub:someone/some-clip") is True  # unknown until fetched: timm comes in
