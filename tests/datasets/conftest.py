import pooch
import pytest
import requests

from celldyn import datasets


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty cache directory; every download fails as if offline."""
    monkeypatch.delenv("CELLDYN_DATA", raising=False)

    def offline(self, url, output_file, pooch_, **kwargs):
        raise requests.exceptions.ConnectionError(f"offline: {url}")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", offline)
    datasets.set_cache_dir(tmp_path / "cache")
    yield tmp_path / "cache"
    datasets.set_cache_dir(None)
