"""Shared input checks of ``celldyn._validate``."""

import anndata as ad
import numpy as np
import pytest

from celldyn._validate import check_positive, check_unique_var_names


@pytest.mark.parametrize("value", [0.0, -1, float("nan"), float("inf"), "1.0", None, True, [1, 2]])
def test_check_positive_names_the_parameter(value):
    with pytest.raises(ValueError, match="`rate` must be a finite positive number"):
        check_positive(value, "rate")


def test_check_positive_accepts_numbers():
    for value in (1, 0.5, np.float32(2.0), np.int64(3), np.array(1.5)):
        check_positive(value, "rate")
    check_positive(0.0, "rate", strict=False)
    with pytest.raises(ValueError, match="`rate` must be a finite non-negative number"):
        check_positive(-0.1, "rate", strict=False)


def test_check_unique_var_names():
    adata = ad.AnnData(np.zeros((2, 3), dtype=np.float32))
    adata.var_names = ["a", "b", "c"]
    check_unique_var_names(adata)
    adata.var_names = ["a", "b", "a"]
    with pytest.raises(ValueError, match=r"adata.var_names are not unique \(duplicated: \['a'\]"):
        check_unique_var_names(adata)
