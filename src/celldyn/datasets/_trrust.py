"""TRRUST v2 transcriptional regulatory network as a decoupler-format prior."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._validate import check_in
from ._cache import fetch

TRRUST_URL = "https://www.grnpedia.org/trrust/data/trrust_rawdata.{organism}.tsv"
_SIGN = {"Activation": 1, "Repression": -1}


def read_trrust(path: str | os.PathLike) -> pd.DataFrame:
    """Read a raw TRRUST tsv (``TF  target  mode  PMIDs``) into a decoupler network.

    See :func:`trrust` for the returned columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TRRUST file {str(path)!r} does not exist.")
    raw = pd.read_csv(
        path, sep="\t", header=None, dtype=str, keep_default_na=False, on_bad_lines="error"
    )
    if raw.shape[1] != 4:
        raise ValueError(
            f"{str(path)!r} has {raw.shape[1]} columns; a raw TRRUST file has 4 "
            "(TF, target, mode, PMIDs)."
        )
    raw.columns = ["source", "target", "mode", "pmid"]
    bad = set(raw["mode"]) - {"Activation", "Repression", "Unknown"}
    if bad:
        raise ValueError(f"{str(path)!r} has unknown regulation mode(s) {sorted(bad)}.")
    raw["sign"] = raw["mode"].map(_SIGN).fillna(0).astype(int)
    pairs = raw.groupby(["source", "target"], sort=True)["sign"]
    net = pd.DataFrame({"act": pairs.max() > 0, "rep": pairs.min() < 0})
    net["mode"] = np.select(
        [net.act & net.rep, net.act, net.rep], ["Mixed", "Activation", "Repression"], "Unknown"
    )
    pmids = raw.assign(pmid=raw["pmid"].str.split(";")).explode("pmid")
    pmids = pmids[pmids["pmid"] != ""].drop_duplicates(["source", "target", "pmid"])
    net["pmid"] = pmids.groupby(["source", "target"])["pmid"].agg(";".join)
    net["pmid"] = net["pmid"].fillna("")
    net = net.drop(columns=["act", "rep"]).reset_index()
    net.insert(2, "weight", net["mode"].map(_SIGN).fillna(0).astype(np.float64))
    return net


def trrust(organism: str = "human", path: str | os.PathLike | None = None) -> pd.DataFrame:
    """TRRUST v2 signed TF → target network (Han et al. 2018) in decoupler format.

    Downloaded once from ``https://www.grnpedia.org/trrust/`` into the cache (see
    :func:`celldyn.datasets.set_cache_dir`; no checksum is pinned), or read from ``path``.

    Parameters
    ----------
    organism
        ``'human'`` or ``'mouse'``.
    path
        A local raw TRRUST tsv (``trrust_rawdata.<organism>.tsv``) to read instead of
        downloading.

    Returns
    -------
    DataFrame with one row per (``source``, ``target``) pair, sorted by both:

    - ``weight``: +1 Activation, −1 Repression, 0 Unknown or Mixed.
    - ``mode``: ``'Activation'``, ``'Repression'``, ``'Unknown'``, or ``'Mixed'`` when the
      pair is reported both as activation and as repression (TRRUST lists such pairs on
      several lines; ``Unknown`` lines do not override a known mode).
    - ``pmid``: ``';'``-joined PubMed ids of all lines of the pair.
    """
    check_in(organism, ("human", "mouse"), "organism")
    if path is None:
        url = TRRUST_URL.format(organism=organism)
        path = fetch(url, f"trrust_rawdata.{organism}.tsv")
    return read_trrust(path)
