"""Download-once cache for the online datasets (pooch).

The cache directory is, in order: the one given to :func:`set_cache_dir`, the environment
variable ``CELLDYN_DATA``, or ``pooch.os_cache('celldyn')``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CELLDYN_DATA"
_cache_dir: Path | None = None


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Set the directory where downloaded datasets are cached.

    Parameters
    ----------
    path
        Directory (created on first download); ``None`` restores the default
        (``$CELLDYN_DATA`` or ``pooch.os_cache('celldyn')``).
    """
    global _cache_dir
    _cache_dir = None if path is None else Path(path).expanduser()


def get_cache_dir() -> Path:
    """Return the directory where downloaded datasets are cached (see :func:`set_cache_dir`)."""
    if _cache_dir is not None:
        return _cache_dir
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    import pooch

    return Path(pooch.os_cache("celldyn"))


def fetch(url: str, fname: str, *, known_hash: str | None = None) -> Path:
    """Return the cached file ``fname``, downloading it from ``url`` the first time.

    Raises
    ------
    ConnectionError
        When the file is not cached and the download fails; the message names the URL and
        where to put the file by hand.
    """
    import pooch

    path = get_cache_dir() / fname
    try:
        return Path(
            pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=path.name,
                path=path.parent,
                progressbar=False,
            )
        )
    except OSError as err:  # requests' and urllib's errors are OSErrors
        raise ConnectionError(
            f"Could not download {url} ({type(err).__name__}: {err}). Check the internet "
            f"connection, or download the file by hand to {path} (the cache directory is set "
            f"by celldyn.datasets.set_cache_dir or ${ENV_VAR})."
        ) from err
