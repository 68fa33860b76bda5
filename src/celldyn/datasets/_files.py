"""Where a real dataset's files are read from: a local folder (``path=``) or the cache.

Every real-data loader names the files it needs and, for each, the public address it is
downloaded from. With ``path`` the files are read from that folder (for example a copy in
``../shared/data/<name>``) and nothing is downloaded; without it they are read from
``<cache>/<name>/`` and fetched there once when missing, under the same file names. A cache
folder therefore looks like a local copy, and a cache directory (``$CELLDYN_DATA``) pointed
at a folder of copies serves every loader without ``path``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ._cache import fetch, get_cache_dir


def dataset_files(
    name: str, path: str | os.PathLike | None, files: Mapping[str, str | None]
) -> dict[str, Path]:
    """Return the local path of each of a dataset's files.

    Parameters
    ----------
    name
        The dataset's folder name in the cache.
    path
        A folder holding the files (read as is), or ``None`` to use the cache.
    files
        File name -> public URL it is downloaded from (``None``: the file cannot be
        downloaded, only read from ``path`` or the cache).

    Returns
    -------
    File name -> path of the file.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a folder or lacks one of the files (all missing ones are named),
        or a file without a public URL is not in the cache.
    ConnectionError
        If a file is not cached and cannot be downloaded.
    """
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"Dataset folder {str(folder)!r} does not exist.")
        missing = sorted(f for f in files if not (folder / f).is_file())
        if missing:
            raise FileNotFoundError(
                f"Dataset folder {str(folder)!r} lacks the file(s) {missing} of {name!r}."
            )
        return {f: folder / f for f in files}
    folder = get_cache_dir() / name
    found = {}
    for file, url in files.items():
        if (folder / file).is_file():
            found[file] = folder / file
        elif url is None:
            raise FileNotFoundError(
                f"{file!r} of {name!r} is not in the cache ({str(folder)!r}) and has no public "
                "download; pass path= to a folder holding it."
            )
        else:
            found[file] = fetch(url, f"{name}/{file}")
    return found
