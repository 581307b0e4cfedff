"""The notebook display (vqclip.notebook): one image updated in place and a tqdm.auto bar, shown through a real
IPython shell's display machinery; and no IPython anywhere near the CLI."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import tiny
from PIL import Image

IPython = pytest.importorskip("IPython")  # the [test] extra installs it


def tiny_cfg(tiny_models, tmp_path, **options):
    # tiny models change their codes within a few steps at lr 0.5
    return tiny.tiny_cfg(tiny_models, tmp_path, **{"optim.lr": 0.5, **options})


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance()


def shown(outputs) -> list[tuple[str, bool, np.ndarray]]:
    """(display id, is an update, pixels) of every image the shell was given."""
    return [
        (o.transient["display_id"], o.update, np.asarray(Image.open(io.BytesIO(o.data["image/png"]))))
        for o in outputs
        if "image/png" in o.data
    ]


def test_a_run_shows_one_image_updated_in_place_and_a_bar(shell, tiny_models, tmp_path):
    from IPython.utils.capture import capture_output

    import vqclip

    with capture_output() as cap:
        result = vqclip.run(
            tiny_cfg(tiny_models, tmp_path, steps=6, **{"output.save_every": 2}), observers=[vqclip.NotebookDisplay()]
        )
    images = shown(cap.outputs)
    assert len(images) == 4  # frames 0, 2, 4 and the final image
    assert len({d for d, _, _ in images}) == 1 and [u for _, u, _ in images] == [False, True, True, True]
    assert all(im.shape == (256, 256, 3) for _, _, im in images)  # 32x32 scaled up 8x to be seen
    final = np.asarray(Image.open(result.image).convert("RGB"))
    np.testing.assert_array_equal(images[-1][2][::8, ::8], final)
    assert not np.array_equal(images[0][2], images[-1][2])
    assert "6/6" in cap.stderr and "loss=" in cap.stderr  # tqdm.auto's bar (text outside a kernel)


def test_watch_shows_the_loop_alone_every_n_steps(shell, tiny_models, tmp_path):
    from IPython.utils.capture import capture_output

    import vqclip

    with capture_output() as cap:
        steps = list(
            vqclip.NotebookDisplay().watch(vqclip.generate(tiny_cfg(tiny_models, tmp_path, steps=5)), every=2, total=5)
        )
    assert [s.i for s in steps] == [0, 1, 2, 3, 4, 5] and steps[-1].final
    images = shown(cap.outputs)
    assert len(images) == 4 and [u for _, u, _ in images] == [False, True, True, True]  # steps 0, 2, 4, final


def test_the_cli_never_imports_ipython(tmp_path):
    """A full generate with --preview, in a process that has IPython installed: it stays unimported."""
    code = (
        "import sys\nfrom vqclip.cli import app\n"
        "try:\n    app(['generate', 'a red circle', '--preset', 'toy', '--steps', '3', '--preview', '--out', "
        f"{str(tmp_path / 'out')!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('IPython' in sys.modules, 'vqclip.notebook' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_without_ipython_the_message_says_what_to_install(monkeypatch):
    import vqclip.notebook
    from vqclip.errors import UsageError

    monkeypatch.setitem(sys.modules, "IPython.display", None)  # as if it were not installed
    with pytest.raises(UsageError, match="pip install ipython"):
        vqclip.notebook.NotebookDisplay()
