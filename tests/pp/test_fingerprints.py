"""pp.morgan_fingerprints: RDKit Morgan bits as condition features (RDKit optional)."""

import builtins

import numpy as np
import pytest

from celldyn.pp import morgan_fingerprints

SMILES = {"ethanol": "CCO", "benzene": "c1ccccc1", "aspirin": "CC(=O)Oc1ccccc1C(=O)O"}


def test_bits():
    pytest.importorskip("rdkit")
    table = morgan_fingerprints(SMILES, n_bits=256)
    assert list(table.index) == list(SMILES) and table.shape == (3, 256)
    assert set(np.unique(table.to_numpy())) <= {0.0, 1.0}
    assert (table.sum(axis=1) > 0).all()
    # benzene's ring bits are part of aspirin's fingerprint; ethanol shares none of them
    assert (table.loc["aspirin"] >= table.loc["benzene"]).all()
    assert not (table.loc["ethanol"] * table.loc["benzene"]).any()
    # a sequence names rows by SMILES; the same molecule gives the same bits
    again = morgan_fingerprints(["CCO"], n_bits=256)
    np.testing.assert_array_equal(again.loc["CCO"], table.loc["ethanol"])


def test_bad_smiles_named():
    pytest.importorskip("rdkit")
    with pytest.raises(ValueError, match=r"\['broken'\]"):
        morgan_fingerprints({"ok": "CCO", "broken": "C1CC(("}, n_bits=64)
    with pytest.raises(TypeError, match="not one string"):
        morgan_fingerprints("CCO")


def test_without_rdkit_names_the_package(monkeypatch):
    real_import = builtins.__import__

    def no_rdkit(name, *args, **kwargs):
        if name == "rdkit" or name.startswith("rdkit."):
            raise ImportError("No module named 'rdkit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rdkit)
    with pytest.raises(ImportError, match="`rdkit`"):
        morgan_fingerprints(SMILES)
