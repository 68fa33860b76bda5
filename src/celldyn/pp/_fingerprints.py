"""Morgan fingerprints of small molecules as condition features (needs the optional RDKit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .._validate import check_int


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator
    except ImportError as error:
        raise ImportError(
            "`celldyn.pp.morgan_fingerprints` needs the optional package `rdkit` "
            "(`pip install rdkit`). Without it, pass any numeric conditions × features "
            "DataFrame to `celldyn.tl.drug_effects`."
        ) from error
    return Chem, RDLogger, rdFingerprintGenerator


def morgan_fingerprints(
    smiles: Mapping[str, str] | pd.Series | Sequence[str],
    *,
    n_bits: int = 2048,
    radius: int = 2,
) -> pd.DataFrame:
    """Morgan (ECFP-like) bit fingerprints of molecules, as features for drug-effect models.

    The FLeCS drug experiments describe each compound by its Morgan fingerprint; the result
    is the ``features`` table of :func:`celldyn.tl.drug_effects` and
    :class:`~celldyn.models.FLeCSDrug`. Requires RDKit (optional, not installed with
    celldyn).

    Parameters
    ----------
    smiles
        SMILES strings: a mapping or Series condition name → SMILES, or a sequence (then the
        SMILES themselves name the rows).
    n_bits
        Fingerprint length.
    radius
        Morgan radius (2 is ECFP4-like).

    Returns
    -------
    DataFrame conditions × ``n_bits`` of 0/1 float32 values, columns ``'bit0'``, ``'bit1'``, ...

    Raises
    ------
    ImportError
        If RDKit is not installed.
    ValueError
        If a SMILES string cannot be parsed (the offending conditions are named).
    """
    n_bits = check_int(n_bits, "n_bits", 1)
    radius = check_int(radius, "radius", 0)
    if isinstance(smiles, str):
        raise TypeError("`smiles` must be a collection of SMILES strings, not one string.")
    series = pd.Series(smiles) if isinstance(smiles, Mapping | pd.Series) else None
    if series is None:
        smiles = list(smiles)
        series = pd.Series(smiles, index=smiles)
    if series.empty:
        raise ValueError("`smiles` is empty.")
    if not series.index.is_unique:
        raise ValueError("`smiles` has duplicated condition names.")
    chem, rdlogger, generators = _rdkit()
    generator = generators.GetMorganGenerator(radius=radius, fpSize=n_bits)
    bits = np.zeros((len(series), n_bits), dtype=np.float32)
    bad = []
    rdlogger.DisableLog("rdApp.error")  # report unparsable SMILES once, below
    try:
        for row, (name, value) in enumerate(series.items()):
            mol = chem.MolFromSmiles(value) if isinstance(value, str) else None
            if mol is None:
                bad.append(name)
                continue
            bits[row, list(generator.GetFingerprint(mol).GetOnBits())] = 1.0
    finally:
        rdlogger.EnableLog("rdApp.error")
    if bad:
        raise ValueError(f"Could not parse the SMILES of conditions {bad[:10]}.")
    return pd.DataFrame(
        bits, index=series.index.astype(str), columns=[f"bit{i}" for i in range(n_bits)]
    )
