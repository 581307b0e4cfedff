"""The built-in VQGAN registry (vqclip/store/vqgan_models.json): every source says where it comes from."""

import json
from pathlib import Path

import pytest

from vqclip.store import registry

DATA = json.loads((Path(registry.__file__).with_name("vqgan_models.json")).read_text())["models"]


@pytest.mark.parametrize("name", sorted(DATA))
def test_every_source_url_has_its_provenance(name):
    for kind, file in DATA[name]["files"].items():
        urls, provenance = file["urls"], file["provenance"]
        assert urls and set(urls) == set(provenance), f"{name} {kind}: urls and provenance differ"
        assert len(set(urls)) == len(urls), f"{name} {kind}: a URL is listed twice"
        for url in urls:
            assert url.startswith(("https://", "http://")) and len(provenance[url]) > 20, (name, kind, url)


@pytest.mark.parametrize("name", ["vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_1024", "vqgan_gumbel_f8_8192"])
def test_official_models_try_heidelberg_first_then_its_single_file_link(name):
    for kind, source in registry.VQGAN_MODELS[name].sources.items():
        assert source.urls[0].startswith("https://heibox.uni-heidelberg.de/d/"), (name, kind)
        assert source.urls[1].startswith("https://heibox.uni-heidelberg.de/f/"), (name, kind)


def test_the_known_mirrors_are_listed():
    urls = {u for m in registry.VQGAN_MODELS.values() for s in m.sources.values() for u in s.urls}
    for expected in [
        "https://github.com/mehdidc/feed_forward_vqgan_clip/releases/download/0.1/vqgan_imagenet_f16_16384.ckpt",
        "https://github.com/pixray/pixray/releases/download/v1.7.1/vqgan_wikiart_16384.ckpt",
        "https://github.com/pixray/pixray/releases/download/v1.7.1/vqgan_wikiart_1024.ckpt",
        "https://heibox.uni-heidelberg.de/f/140747ba53464f49b476/?dl=1",
        "https://heibox.uni-heidelberg.de/f/34a747d5765840b5a99d/?dl=1",
        "https://github.com/Eleiber/VQGAN-Mirrors/releases/download/0.0.1/vqgan_imagenet_f16_16384.ckpt",
    ]:
        assert expected in urls
