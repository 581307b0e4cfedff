"""The lock's promise matches what it checks: a changed stat forces a re-hash on every load; bytes changed in place
with size and mtime put back are what `vqclip models verify` is for, as the README and integrity.py say."""

import os

import pytest
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.errors import CheckpointError
from vqclip.store import hub, integrity, resolve_vqgan

runner = CliRunner()


def _zero_in_place(path, keep_mtime: bool) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[1000:3000] = bytes(2000)
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def added(tiny_models, tmp_path):
    """A user model added (its files locked), and its checkpoint copied where the test may damage it."""
    ckpt = tmp_path / "mine.ckpt"
    ckpt.write_bytes(open(tiny_models["ckpt"], "rb").read())
    hub.add_vqgan("mine", tiny_models["vqgan"], ckpt, check=False)
    return ckpt


def test_a_changed_stat_is_always_re_hashed_and_refused(added):
    _zero_in_place(added, keep_mtime=False)
    with pytest.raises(CheckpointError, match="does not match the SHA-256 recorded"):
        resolve_vqgan("mine")


def test_bytes_zeroed_with_the_stat_put_back_are_found_by_models_verify(added, tmp_path):
    _zero_in_place(added, keep_mtime=True)
    resolve_vqgan("mine")  # the documented trade-off: an unchanged stat is not re-hashed on every run
    result = runner.invoke(app, ["models", "verify"])
    assert result.exit_code == 2, result.output
    assert f"{added}: does not match the SHA-256 recorded on" in result.stdout
    assert "1 recorded model file(s)" in result.stderr and "--force" in result.stderr
    added.unlink()
    result = runner.invoke(app, ["models", "verify"])
    assert result.exit_code == 2 and f"{added}: is missing" in result.stdout


def test_models_verify_passes_when_every_file_matches(added):
    result = runner.invoke(app, ["models", "verify"])
    assert result.exit_code == 0 and "matches its SHA-256" in result.stderr and result.stdout == ""


def test_the_promise_is_stated_where_it_is_made():
    readme = (integrity.Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "vqclip models verify" in readme and "size and mtime" in readme
    assert "models verify" in integrity.__doc__ and "size and mtime" in integrity.__doc__


@pytest.mark.parametrize("content", ['["a list"]', '{"files": []}', '{"files": {"x": 3}}', "{", '{"files": "no"}'])
def test_a_damaged_lock_file_is_one_clear_error(content, tmp_path, added):
    (tmp_path / "checkpoints" / "vqclip.lock.json").write_text(content)
    with pytest.raises(CheckpointError, match="vqclip.lock.json is unreadable .*delete it to trust the files again"):
        resolve_vqgan("mine")
    assert (tmp_path / "checkpoints" / "vqclip.lock.json").read_text() == content  # left for the user to look at
