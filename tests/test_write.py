"""write_results: validate every value first, write last."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from celldyn._write import write_results


def _adata():
    return ad.AnnData(np.zeros((4, 3), dtype=np.float32), var=pd.DataFrame(index=["a", "b", "c"]))


def test_a_misshaped_value_raises_before_anything_is_written():
    adata = _adata()
    with pytest.raises(ValueError, match=r"varp\['net'\] has shape \(5, 5\), expected \(3, 3\)"):
        write_results(
            adata,
            obs={"score": np.ones(4)},
            layers={"velocity": np.ones((4, 3))},
            varp={"net": np.ones((5, 5))},
        )
    assert "score" not in adata.obs and "velocity" not in adata.layers and not adata.varp


@pytest.mark.parametrize(
    ("slot", "value"),
    [("obs", np.ones(3)), ("obsm", np.ones((3, 2))), ("layers", np.ones((4, 2))), ("var", [1])],
)
def test_every_axis_is_checked(slot, value):
    with pytest.raises(ValueError, match="expected"):
        write_results(_adata(), **{slot: {"x": value}})


def test_fitting_values_are_written():
    adata = _adata()
    write_results(adata, obs={"s": np.ones(4)}, varm={"m": np.ones((3, 2))}, uns={"u": {"a": 1}})
    assert adata.obs["s"].sum() == 4 and adata.varm["m"].shape == (3, 2) and adata.uns["u"]
