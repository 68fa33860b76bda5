"""Prior gene regulatory networks (decoupler format) as sparse regulator × target matrices."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._validate import check_adata
from .._write import write_results


@fill_doc
def prior_network(
    adata: AnnData,
    net: pd.DataFrame,
    *,
    source: str = "source",
    target: str = "target",
    weight: str | None = "auto",
    case_sensitive: bool = True,
    add_random_edges: float = 0.0,
    symmetrize: bool = False,
    min_coverage: float = 0.1,
    random_state: int = 0,
    key_added: str = _keys.PRIOR,
    copy: bool = False,
) -> AnnData | None:
    """Store a prior network as a sparse regulator × target matrix in ``adata.varp``.

    ``net`` is a decoupler-format DataFrame (e.g. the output of ``decoupler.op.collectri``):
    one directed edge ``source → target`` per row. An edge ``A → B`` is stored at row ``A``,
    column ``B`` (rows are regulators, columns are targets). Only edges whose two genes are in
    ``adata.var_names`` are kept; self loops are kept. Duplicated ``(source, target)`` pairs
    are merged into one edge whose weight is the mean of theirs; edges whose weight is then
    exactly 0 are dropped with a warning (a sparse matrix cannot hold them reliably), except
    with ``weight='auto'`` (see below).

    Order of operations: restrict to the genes, merge duplicates, ``symmetrize`` (add ``B → A``
    with the weight of ``A → B`` wherever only ``A → B`` exists), then ``add_random_edges``
    (new uniformly random pairs, self loops included, weight 1) until the density
    ``n_edges / n_vars²`` reaches the requested value, as in the FLeCS paper.

    Parameters
    ----------
    {adata}
    net
        DataFrame with columns ``source``, ``target`` and optionally ``weight``.
    source, target
        Column names of regulators and targets.
    weight
        Column of signed edge weights (finite numbers); ``None`` gives every edge weight 1.
        ``'auto'`` (default): decoupler's ``weight`` column (e.g. CollecTRI's mode of
        regulation) when ``net`` has one, else weight 1 as in decoupler; when some of its
        edges would get weight 0 (e.g. a sign 0 for "both"), every edge gets weight 1 instead
        with a warning, so the default never drops an edge. FLeCS uses only which edges exist,
        not their weights.
    case_sensitive
        Match gene names exactly; ``False`` matches them ignoring case (an error is raised
        when a network gene matches several ``var_names``).
    add_random_edges
        Target edge density in ``[0, 1]`` reached with random edges; ``0`` adds none.
    symmetrize
        Add the reverse of every edge.
    min_coverage
        Warn when fewer than this fraction of the genes are touched by a prior edge.
    random_state
        Seed of the random edges.
    key_added
        ``varp`` and ``uns`` key to write.
    {copy}

    Returns
    -------
    The new AnnData when ``copy=True``, else ``None``; ``adata`` gains:

    ``varp[key_added]``
        Sparse CSR ``float64`` ``(n_vars, n_vars)`` matrix, regulator (row) × target (column).
    ``uns[key_added]``
        ``'params'``; ``'n_edges'`` (stored edges, all included); ``'n_edges_input'`` (rows of
        ``net``); ``'edges_kept_fraction'`` (fraction of rows with both genes in ``adata``);
        ``'n_regulators'``, ``'n_targets'`` and ``'genes_covered'`` (fraction of genes in at
        least one edge), computed before random edges; ``'n_random_edges'``; ``'density'``;
        ``'random_edges'`` (DataFrame ``source``/``target`` of the random edges).
    """
    check_adata(adata)
    if not isinstance(net, pd.DataFrame):
        raise TypeError(f"`net` must be a pandas DataFrame, got {type(net).__name__}.")
    auto = weight == "auto"
    if auto:
        weight = "weight" if "weight" in net.columns else None
    columns = [source, target] + ([weight] if weight is not None else [])
    missing = [c for c in columns if c not in net.columns]
    if missing:
        raise KeyError(f"`net` has no column(s) {missing}. Columns: {list(net.columns)}.")
    if not np.isfinite(add_random_edges) or not 0 <= add_random_edges <= 1:
        raise ValueError(
            f"`add_random_edges` must be a density in [0, 1], got {add_random_edges!r}."
        )
    if not np.isfinite(min_coverage) or not 0 <= min_coverage <= 1:
        raise ValueError(f"`min_coverage` must be in [0, 1], got {min_coverage!r}.")
    if weight is None:
        weights = np.ones(len(net))
    else:
        try:
            weights = pd.to_numeric(net[weight]).to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`net[{weight!r}]` must be numeric.") from err
        if not np.all(np.isfinite(weights)):
            n_bad = int(np.sum(~np.isfinite(weights)))
            raise ValueError(f"`net[{weight!r}]` has {n_bad} NaN or infinite weights.")

    n = adata.n_vars
    rows = _gene_index(adata.var_names, net[source], case_sensitive)
    cols = _gene_index(adata.var_names, net[target], case_sensitive)
    kept = (rows >= 0) & (cols >= 0)
    if not kept.any():
        raise ValueError(
            "No edge of `net` has both genes in adata.var_names "
            f"(e.g. net genes {list(pd.unique(net[source].astype(str)))[:3]}, "
            f"var_names {list(adata.var_names[:3])}); check the gene identifiers"
            + (" or pass case_sensitive=False." if case_sensitive else ".")
        )
    matrix = _merge_duplicates(rows[kept], cols[kept], weights[kept], n, drop_zero=not auto)
    if matrix is None:  # weight='auto' never drops an edge: unweighted edges instead
        warnings.warn(
            f"Some edges get weight 0 from net[{weight!r}]; every edge is stored with weight 1 "
            "(pass weight='weight' to keep the signed weights and drop those edges).",
            UserWarning,
            stacklevel=2,
        )
        weight = None
        matrix = _merge_duplicates(rows[kept], cols[kept], np.ones(int(kept.sum())), n)
    if symmetrize:
        reverse = matrix.T.tocsr()
        only_reverse = reverse - reverse.multiply(matrix != 0)
        matrix = (matrix + only_reverse).tocsr()
    prior_rows, prior_cols = matrix.nonzero()
    genes_covered = len(np.union1d(prior_rows, prior_cols)) / n
    if genes_covered < min_coverage:
        warnings.warn(
            f"The prior network touches only {genes_covered:.1%} of the genes "
            f"(min_coverage={min_coverage:.1%}).",
            UserWarning,
            stacklevel=2,
        )
    random_rows, random_cols = _random_edges(matrix, add_random_edges, random_state)
    if len(random_rows):
        extra = sp.csr_matrix((np.ones(len(random_rows)), (random_rows, random_cols)), shape=(n, n))
        matrix = (matrix + extra).tocsr()
    matrix.sort_indices()

    info = {
        "params": {
            "source": source,
            "target": target,
            "weight": weight,
            "case_sensitive": case_sensitive,
            "add_random_edges": float(add_random_edges),
            "symmetrize": symmetrize,
            "min_coverage": float(min_coverage),
            "random_state": random_state,
        },
        "n_edges": int(matrix.nnz),
        "n_edges_input": len(net),
        "edges_kept_fraction": float(kept.mean()),
        "n_regulators": len(np.unique(prior_rows)),
        "n_targets": len(np.unique(prior_cols)),
        "genes_covered": float(genes_covered),
        "n_random_edges": len(random_rows),
        "density": matrix.nnz / n**2,
        "random_edges": pd.DataFrame(
            {
                "source": np.asarray(adata.var_names[random_rows], dtype=str),
                "target": np.asarray(adata.var_names[random_cols], dtype=str),
            }
        ),
    }
    return write_results(adata, copy=copy, varp={key_added: matrix}, uns={key_added: info})


def _gene_index(var_names: pd.Index, genes: pd.Series, case_sensitive: bool) -> np.ndarray:
    """Position of each gene in ``var_names``, ``-1`` when absent."""
    if not var_names.is_unique:
        raise ValueError("adata.var_names are not unique; run `adata.var_names_make_unique()`.")
    present = genes.notna().to_numpy()
    names = genes.astype(str)
    if case_sensitive:
        index = var_names.get_indexer(names)
    else:
        upper = pd.Index(var_names.str.upper())
        wanted = names.str.upper()
        clash = upper.duplicated(keep=False)
        ambiguous = pd.unique(wanted[wanted.isin(upper[clash])])
        if len(ambiguous):
            examples = [list(var_names[upper == name]) for name in ambiguous[:3]]
            raise ValueError(
                f"Case-insensitive matching is ambiguous for {len(ambiguous)} gene(s), e.g. "
                f"{examples}; use case_sensitive=True."
            )
        hit = upper[~clash].get_indexer(wanted)
        index = np.where(hit >= 0, np.flatnonzero(~clash)[hit], -1)
    return np.where(present, index, -1)


def _merge_duplicates(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int, *, drop_zero: bool = True
) -> sp.csr_matrix | None:
    """CSR matrix with the mean weight of each ``(row, col)`` pair; zero weights dropped.

    With ``drop_zero=False``, ``None`` when some pair has weight 0.
    """
    mean = pd.Series(weights).groupby([rows, cols]).mean()
    nonzero = mean.to_numpy() != 0
    if not nonzero.all():
        if not drop_zero:
            return None
        warnings.warn(
            f"{int((~nonzero).sum())} of {len(mean)} edges have weight 0 and are dropped.",
            UserWarning,
            stacklevel=3,
        )
    mean = mean[nonzero]
    pairs = (mean.index.get_level_values(0), mean.index.get_level_values(1))
    return sp.csr_matrix((mean.to_numpy(), pairs), shape=(n, n))


def _random_edges(
    matrix: sp.csr_matrix, density: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly random new ``(row, col)`` pairs that bring ``matrix`` to ``density``."""
    n = matrix.shape[0]
    n_add = int(round(density * n * n)) - matrix.nnz
    if n_add <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    rows, cols = matrix.nonzero()
    taken = set((rows.astype(np.int64) * n + cols).tolist())
    chosen: list[int] = []
    while len(chosen) < n_add:
        for flat in rng.integers(0, n * n, size=2 * (n_add - len(chosen))).tolist():
            if flat not in taken:
                taken.add(flat)
                chosen.append(flat)
                if len(chosen) == n_add:
                    break
    flat = np.sort(np.asarray(chosen, dtype=np.int64))
    return flat // n, flat % n
