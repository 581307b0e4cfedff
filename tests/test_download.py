"""The downloader against a real HTTP server on 127.0.0.1: progress, resume, fallback, checksums, Ctrl-C."""

import hashlib
import os
import time
import urllib.parse

import pytest
from fileserver import FileServer

from vqclip.errors import DownloadError
from vqclip.store import download
from vqclip.store.download import fetch, with_mirror

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
    kept = partial.stat().st_size  # reads return what has arrived, so the cut falls on no fixed byte
    assert not dest.exists() and 64 * 1024 <= kept < len(DATA) and partial.read_bytes() == DATA[:kept]
    fetch([server.url + "/m.ckpt"], dest, SHA)
    assert dest.read_bytes() == DATA and server.requests[-1] == ("/m.ckpt", f"bytes={kept}-")


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
    assert [p.name for p in tmp_path.iterdir()] == [".m.ckpt.lock"]  # the lock stays, so waiters share its inode


def test_all_sources_failing_names_each_reason(server, tmp_path):
    server.status["/m.ckpt"] = 503
    with pytest.raises(DownloadError, match=r"gone\.ckpt: HTTP 404.*m\.ckpt: HTTP 503 \(gave up after 2 retries\)"):
        fetch([server.url + "/gone.ckpt", server.url + "/m.ckpt"], tmp_path / "m.ckpt", retries=2, backoff=0)
    assert server.paths_requested().count("/m.ckpt") == 3


def test_mirror_comes_first_as_base_slash_file_name(monkeypatch):
    assert with_mirror(["https://a/x?dl=1"], "f.ckpt", "http://m/models/") == [
        "http://m/models/f.ckpt",
        "https://a/x?dl=1",
    ]
    monkeypatch.setenv("VQCLIP_MIRROR", "http://env")
    assert with_mirror(["u"], "f.ckpt")[0] == "http://env/f.ckpt"
    monkeypatch.delenv("VQCLIP_MIRROR")
    assert with_mirror(["u"], "f.ckpt") == ["u"]


# ---------------------------------------------------------------------------------------------------------
# hostile servers: whatever a source sends, nothing gets the final name unless it is the file, and the next
# source is tried. (id, server setup, fetch options, fragment of the reason named in the error)
HOSTILE = [
    (
        "no-length-cut-short",
        lambda s: (s.no_length.add("/bad"), s.drop.__setitem__("/bad", [50_000])),
        {"sha256": SHA},
        "checksum mismatch",
    ),
    (
        "html-as-octet-stream",
        lambda s: s.files.__setitem__("/bad", b"\n  <!DOCTYPE html><html>quota</html>"),
        {},
        "sent a web page",
    ),
    ("empty-body", lambda s: s.files.__setitem__("/bad", b""), {}, "sent an empty file"),
    ("malformed-length", lambda s: s.bad_length.__setitem__("/bad", "300000abc"), {}, "malformed Content-Length"),
    ("negative-length", lambda s: s.bad_length.__setitem__("/bad", "-5"), {}, "malformed Content-Length"),
    ("two-lengths", lambda s: s.bad_length.__setitem__("/bad", "1, 300000"), {}, "malformed Content-Length"),
    ("larger-than-allowed", None, {"max_bytes": 100_000}, "offers 300000 bytes, more than the 100000"),
    ("endless-body", lambda s: s.endless.add("/bad"), {"max_bytes": 400_000}, "more than the 400000 bytes"),
    ("drip", lambda s: s.drip.__setitem__("/bad", 0.05), {"min_rate": 1000, "window": 0.5}, "sent only"),
    (
        "not-the-file",
        lambda s: s.files.__setitem__("/bad", os.urandom(1000)),
        {"accept": lambda p: _refuse_unless(p, DATA)},
        r"what it sent is not the file \(not the model\)",
    ),
]


def _refuse_unless(path, data):
    from vqclip.errors import CheckpointError

    if path.read_bytes() != data:
        raise CheckpointError("not the model")


@pytest.mark.parametrize("case, setup, options, fragment", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_source_is_refused_and_the_next_one_used(case, setup, options, fragment, server, tmp_path):
    if setup is None:
        server.files["/bad"] = DATA
    else:
        if "/bad" not in server.files:
            server.files["/bad"] = DATA
        setup(server)
    options = {"retries": 1, "backoff": 0, **options}
    dest = tmp_path / "m.ckpt"
    with pytest.raises(DownloadError, match=fragment) as info:
        fetch([server.url + "/bad"], dest, **options)
    assert "\n" not in str(info.value) and "--mirror" in str(info.value)
    assert not dest.exists()
    # a slow source's bytes are kept for a resume from the next source; anything else it sent is gone
    assert (tmp_path / "m.ckpt.partial").exists() == (case == "drip")
    # the same bad source first, then a good one: the file is the good one's, byte for byte
    if options.get("max_bytes", len(DATA)) < len(DATA):
        options.pop("max_bytes")
    assert fetch([server.url + "/bad", server.url + "/m.ckpt"], dest, **options) == SHA
    assert dest.read_bytes() == DATA


def test_a_resume_at_the_wrong_byte_starts_over_instead_of_splicing(server, tmp_path):
    (tmp_path / "m.ckpt.partial").write_bytes(DATA[:100_000])
    server.bad_range.add("/m.ckpt")  # answers the Range request with a 206 from byte 0
    assert fetch([server.url + "/m.ckpt"], tmp_path / "m.ckpt", retries=2, backoff=0) == SHA
    assert (tmp_path / "m.ckpt").read_bytes() == DATA
    assert server.requests == [("/m.ckpt", "bytes=100000-"), ("/m.ckpt", None)]


def test_the_deadline_bounds_a_whole_file_and_keeps_the_partial(server, tmp_path):
    server.drip["/m.ckpt"] = 0.02  # ~50 bytes/s: fast enough for the rate rule below, far too slow to finish
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"within 1\.5 s .*bytes kept in m\.ckpt\.partial.*run the same command"):
        fetch([server.url + "/m.ckpt"], tmp_path / "m.ckpt", SHA, min_rate=1, window=0.5, deadline=1.5)
    assert time.monotonic() - start < 1.5 + 2
    assert not (tmp_path / "m.ckpt").exists() and (tmp_path / "m.ckpt.partial").stat().st_size > 0
