"""The downloader against a real HTTP server on 127.0.0.1: progress, resume, fallback, checksums, Ctrl-C."""

import hashlib
import os
import urllib.parse

import pytest

from fileserver import FileServer
from vqclip.store import download
from vqclip.store.download import fetch, with_mirror
from vqclip.errors import DownloadError

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    """Small chunks so a 300 kB file takes several reads; and no request may leave 127.0.0.1."""
    monkeypatch.setattr(download, "CHUNK", 32 * 1024)
    real = download.urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        assert urllib.parse.urlsplit(request.full_url).hostname == "127.0.0.1", request.full_url
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", guarded)


@pytest.fixture
def server():
    with FileServer() as s:
        s.files["/m.ckpt"] = DATA
        yield s


def test_download_reports_progress_and_lands_verified(server, tmp_path):
    events = []
    dest = tmp_path / "m.ckpt"
    assert fetch([server.url + "/m.ckpt"], dest, SHA, events.append) == SHA
    assert dest.read_bytes() == DATA and not (tmp_path / "m.ckpt.partial").exists()
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] == len(DATA) and len(done) >= 9
    assert {e.total for e in events} == {len(DATA)} and events[0].name == "m.ckpt"


def test_resume_after_the_server_drops_the_connection(server, tmp_path):
    server.drop["/m.ckpt"] = [100_000]
    events = []
    dest = tmp_path / "m.ckpt"
    fetch([server.url + "/m.ckpt"], dest, SHA, events.append, retries=2, backoff=0)
    assert dest.read_bytes() == DATA
    assert server.requests == [("/m.ckpt", None), ("/m.ckpt", "bytes=100000-")]
    assert events[-1].done == len(DATA)


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "m.ckpt.partial").write_bytes(b"junk" * 100)
    server.ignore_range = True
    fetch([server.url + "/m.ckpt"], tmp_path / "m.ckpt", SHA, backoff=0)
    assert (tmp_path / "m.ckpt").read_bytes() == DATA


def test_ctrl_c_leaves_a_resumable_partial_and_nothing_under_the_final_name(server, tmp_path):
    dest = tmp_path / "m.ckpt"

    def interrupt(p):
        if p.done >= 64 * 1024:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch([server.url + "/m.ckpt"], dest, SHA, interrupt)
    partial = tmp_path / "m.ckpt.partial"
    assert not dest.exists() and partial.stat().st_size == 64 * 1024
    fetch([server.url + "/m.ckpt"], dest, SHA)
    assert dest.read_bytes() == DATA and server.requests[-1] == ("/m.ckpt", f"bytes={64 * 1024}-")


def test_falls_back_to_the_next_url_on_404_and_500(server, tmp_path):
    server.status["/broken.ckpt"] = 500
    urls = [server.url + "/gone.ckpt", server.url + "/broken.ckpt", server.url + "/m.ckpt"]
    fetch(urls, tmp_path / "m.ckpt", SHA, retries=1, backoff=0)
    assert (tmp_path / "m.ckpt").read_bytes() == DATA
    # 404 is final for its URL; 500 is retried once before moving on
    assert server.paths_requested() == ["/gone.ckpt", "/broken.ckpt", "/broken.ckpt", "/m.ckpt"]


def test_a_web_page_instead_of_the_file_is_not_saved(server, tmp_path):
    server.html.add("/throttled.ckpt")
    fetch([server.url + "/throttled.ckpt", server.url + "/m.ckpt"], tmp_path / "m.ckpt", SHA)
    assert (tmp_path / "m.ckpt").read_bytes() == DATA


def test_checksum_mismatch_is_refused_and_nothing_is_left(server, tmp_path):
    dest = tmp_path / "m.ckpt"
    with pytest.raises(DownloadError, match="checksum mismatch.*--mirror"):
        fetch([server.url + "/m.ckpt"], dest, "0" * 64, backoff=0)
    assert list(tmp_path.iterdir()) == []


def test_all_sources_failing_names_each_reason(server, tmp_path):
    server.status["/m.ckpt"] = 503
    with pytest.raises(DownloadError, match=r"gone\.ckpt: HTTP 404.*m\.ckpt: HTTP 503 \(gave up after 2 retries\)"):
        fetch([server.url + "/gone.ckpt", server.url + "/m.ckpt"], tmp_path / "m.ckpt", retries=2, backoff=0)
    assert server.paths_requested().count("/m.ckpt") == 3


def test_mirror_comes_first_as_base_slash_file_name(monkeypatch):
    assert with_mirror(["https://a/x?dl=1"], "f.ckpt", "http://m/models/") == ["http://m/models/f.ckpt", "https://a/x?dl=1"]
    monkeypatch.setenv("VQCLIP_MIRROR", "http://env")
    assert with_mirror(["u"], "f.ckpt")[0] == "http://env/f.ckpt"
    monkeypatch.delenv("VQCLIP_MIRROR")
    assert with_mirror(["u"], "f.ckpt") == ["u"]
