"""FLeCS drug model: small-molecule effects on production and decay on a frozen FLeCS network."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass

from .. import _keys
from .._compat import registered, setup_args
from .._docs import fill_doc
from .._readers import read_trajectories
from .._validate import check_adata, check_layer, check_obs_key
from ..module._flecs_drug import FLeCSDrugModule
from ..nn import GRNVectorField, SolverDivergedError
from ._data import TensorDataModule
from ._flecs import FLeCS
from ._inference import batched, check_indices
from ._results import FitResults
from ._training import TrainingMixin


def check_features(
    features: object, n_features: int | None = None, *, unique: bool = True
) -> pd.DataFrame:
    """Check a conditions × features table: numeric, finite, ``n_features`` wide, unique names."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            f"`features` must be a pandas DataFrame (conditions × features), "
            f"got {type(features).__name__}."
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"`features` is empty (shape {features.shape}).")
    if unique and not features.index.is_unique:
        duplicated = features.index[features.index.duplicated()].unique().tolist()
        raise ValueError(f"`features` has duplicated conditions {duplicated[:5]}.")
    if n_features is not None and features.shape[1] != n_features:
        raise ValueError(
            f"`features` must have {n_features} columns (as in training), got {features.shape[1]}."
        )
    try:
        values = features.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError("`features` must hold numbers only.") from error
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(
            "`features` has NaN or infinite values for conditions "
            f"{features.index[bad][:5].tolist()}."
        )
    return pd.DataFrame(values, index=features.index.astype(str), columns=features.columns)


def read_condition_labels(adata: AnnData, condition_key: str) -> np.ndarray:
    """Condition label (str) of every cell from ``obs[condition_key]``; none may be missing."""
    check_obs_key(adata, condition_key)
    if adata.obs[condition_key].isna().any():
        raise ValueError(f"adata.obs[{condition_key!r}] has missing condition labels.")
    return adata.obs[condition_key].astype(str).to_numpy()


class FLeCSDrug(TrainingMixin, BaseModelClass):
    r"""Drug (small-molecule) effects on a fitted FLeCS network (FLeCS, Bertin et al.).

    A condition ``c`` (drug, dose, ...) is described by a feature vector (e.g. a Morgan
    fingerprint, :func:`celldyn.pp.morgan_fingerprints`). Two MLPs
    (:class:`~celldyn.nn.DrugEffect`) turn it into per-gene offsets of the production input
    :math:`p(c)` and of the decay rate :math:`d(c)` of the fitted field ``base``:

    .. math:: \frac{dG}{dt} = \sigma(W^\top G + b + p(c)) - \max(0, \alpha + d(c))\, G.

    ``base`` stays frozen (its parameters never change); only the MLPs are trained, on the
    trajectories of ``uns[trajectories]``: each is integrated from its first cell under its
    condition's offsets and the squared error to the later cells is minimised. A
    trajectory's condition is that of its **last** cell (as in the reference, whose paths go
    from control cells to treated cells); its cells must all belong to that condition or to
    ``control``. The ``control`` condition has offsets exactly 0 and needs no features; its
    trajectories are not used in training (they carry no drug effect to learn).

    Because the effect is a function of the features, any feature vector gives offsets: a
    drug never seen in training can be predicted (:meth:`get_offsets`,
    :meth:`predict_trajectories`). After training, ``trained_conditions_`` lists the
    conditions that had training trajectories.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    base
        Fitted :class:`~celldyn.nn.GRNVectorField` over ``adata``'s genes (e.g. from
        :class:`~celldyn.models.FLeCS`, or rebuilt from ``uns['flecs']['models']`` of
        :func:`celldyn.tl.flecs` by :meth:`~celldyn.nn.GRNVectorField.from_arrays`); copied.
    features
        DataFrame conditions (index) × features; must contain every non-control condition of
        ``adata``. Further rows (unseen drugs) are allowed.
    control
        Label of untreated cells in the condition column.
    trajectories
        ``uns`` key of the trajectories (:func:`celldyn.pp.trajectories`).
    n_hidden
        Hidden width of each effect MLP.
    """

    check_features = staticmethod(check_features)

    def __init__(
        self,
        adata: AnnData,
        base: GRNVectorField,
        features: pd.DataFrame,
        *,
        control: str = _keys.CONTROL,
        trajectories: str = _keys.TRAJECTORIES,
        n_hidden: int = 64,
    ):
        super().__init__(adata)
        if not isinstance(base, GRNVectorField):
            raise TypeError(f"`base` must be a GRNVectorField, got {type(base).__name__}.")
        if base.n_genes != adata.n_vars:
            raise ValueError(
                f"`base` models {base.n_genes} genes but adata has {adata.n_vars} variables."
            )
        self.features = check_features(features)
        self.control = str(control)
        self.trajectories_key = trajectories
        self.trained_conditions_: list[str] = []
        self._cell_conditions(adata)  # every condition has features
        self.module = FLeCSDrugModule(base, self.features.shape[1], n_hidden=n_hidden)
        self._model_summary_string = (
            f"FLeCSDrug: {adata.n_vars} genes, {len(self.features)} conditions × "
            f"{self.features.shape[1]} features, control {self.control!r}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls, adata: AnnData, *, condition_key: str, layer: str | None = None, **kwargs
    ) -> None:
        """Register ``adata`` for FLeCSDrug.

        Parameters
        ----------
        adata
            Annotated data matrix.
        condition_key
            Column of ``adata.obs`` with each cell's condition (drug) label.
        layer
            Layer with the (normalised, not count) expression; ``None`` uses ``adata.X``.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_adata(adata)
        check_layer(adata, layer)
        read_condition_labels(adata, condition_key)
        fields = [LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False)]
        cls._register_fields(adata, fields, setup_method_args, **kwargs)

    _rows = FLeCS._rows  # registered expression rows, read on demand

    def _check_adata(self, adata: AnnData) -> None:
        """Check an AnnData for a getter before it is registered.

        As :class:`FLeCS` (the model's genes, a finite expression), and every cell's
        condition must be the control or have features.
        """
        FLeCS._check_adata(self, adata)
        self._cell_conditions(adata)

    def _cell_conditions(self, adata: AnnData) -> np.ndarray:
        """Condition of every cell; KeyError if one is neither control nor in the features."""
        key = setup_args(self)["condition_key"]
        labels = read_condition_labels(adata, key)
        unknown = sorted(set(labels) - set(self.features.index) - {self.control})
        if unknown:
            raise KeyError(
                f"Conditions {unknown[:10]} of adata.obs[{key!r}] have no row in `features` "
                f"(and are not the control {self.control!r})."
            )
        return labels

    def _trajectory_conditions(self, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Condition of each trajectory: its last cell's (others must share it or be control)."""
        cells = labels[indices]
        conditions = cells[:, -1]
        mixed = ~((cells == conditions[:, None]) | (cells == self.control)).all(axis=1)
        if mixed.any():
            raise ValueError(
                f"{int(mixed.sum())} trajectories mix cells of different treated conditions "
                f"(e.g. {sorted(set(cells[np.flatnonzero(mixed)[0]]))}); build trajectories "
                "within each condition (plus control cells)."
            )
        return conditions

    def _feature_rows(self, conditions: Sequence[str] | pd.DataFrame | np.ndarray) -> torch.Tensor:
        """Features of named conditions (control: zeros, masked later) or of a feature matrix."""
        if isinstance(conditions, pd.DataFrame):
            table = check_features(conditions, self.features.shape[1], unique=False)
            return torch.as_tensor(table.to_numpy(np.float32))
        array = np.asarray(conditions)
        if array.ndim == 2:
            table = check_features(pd.DataFrame(array), self.features.shape[1], unique=False)
            return torch.as_tensor(table.to_numpy(np.float32))
        if array.ndim != 1 or array.dtype.kind not in "OUS":
            raise ValueError(
                "`conditions` must be condition names or a 2-D feature matrix "
                f"(n, {self.features.shape[1]}); got an array of shape {array.shape}."
            )
        names = array.astype(str)
        unknown = sorted(set(names) - set(self.features.index) - {self.control})
        if unknown:
            raise KeyError(f"Conditions {unknown[:10]} have no row in the model's features.")
        table = self.features.reindex(names).fillna(0.0)  # only control rows are missing
        return torch.as_tensor(table.to_numpy(np.float32))

    def _offsets(self, features: torch.Tensor, is_control: np.ndarray) -> tuple:
        production, decay = self.module.effect(features.to(self.device))
        keep = torch.as_tensor(~is_control, device=self.device)[:, None]
        return production * keep, decay * keep

    @fill_doc
    def train(
        self,
        *,
        max_epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        validation_size: float = 0.1,
        random_state: int = 0,
        **lightning_kwargs,
    ) -> None:
        """Fit the effect MLPs to the treated trajectories with Lightning (``base`` frozen).

        Parameters
        ----------
        max_epochs
            Passes over the treated trajectories.
        batch_size
            Trajectories per minibatch (per process under DDP, ``strategy='ddp'``).
        lr, weight_decay
            Adam settings.
        method, rtol, atol
            Solver of :func:`~celldyn.nn.integrate`, as in :meth:`celldyn.models.FLeCS.train`.
        validation_size
            Fraction of trajectories held out for validation.
        random_state
            Seed of the validation split.
        {lightning_kwargs}
        """
        trajectories = read_trajectories(self.adata, self.trajectories_key)
        labels = self._cell_conditions(self.adata)
        conditions = self._trajectory_conditions(labels, trajectories.indices)
        treated = conditions != self.control
        if not treated.any():
            raise ValueError(
                f"All trajectories end in control cells ({self.control!r}): nothing to learn."
            )
        indices, times = trajectories.indices[treated], trajectories.times[treated]
        conditions = conditions[treated]
        self.trained_conditions_ = sorted(set(conditions.tolist()))
        rows = self._rows(self.adata, check=True)
        self.module.method, self.module.rtol, self.module.atol = method, rtol, atol
        datamodule = TensorDataModule(
            {
                "cells": torch.from_numpy(indices),
                "t": torch.as_tensor(times, dtype=torch.float32),
                "features": self._feature_rows(conditions),
            },
            batch_size=int(batch_size),
            validation_size=validation_size,
            random_state=random_state,
            transform=rows.gather,
        )
        self._fit(
            datamodule, max_epochs=max_epochs, lr=lr, weight_decay=weight_decay, **lightning_kwargs
        )

    # ------------------------------------------------------------------ getters
    @torch.no_grad()
    def get_offsets(
        self, conditions: Sequence[str] | pd.DataFrame | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Production and decay offsets ``(n_conditions, n_genes)`` float32 of conditions.

        Parameters
        ----------
        conditions
            Condition names (rows of the model's features; the control gives 0), or a
            feature matrix ``(n, n_features)`` (DataFrame or array) of any, also unseen,
            conditions. ``None``: every row of the model's features.

        Returns
        -------
        ``(production, decay)``; the decay offset is the raw MLP output (the field clamps the
        total decay ``alpha + d`` at 0).
        """
        if conditions is None:
            conditions = self.features.index.to_numpy()
        features = self._feature_rows(conditions)
        names = np.asarray(conditions).astype(str) if np.ndim(conditions) == 1 else None
        is_control = names == self.control if names is not None else np.zeros(len(features), bool)
        production, decay = self._offsets(features, is_control)
        return production.cpu().numpy(), decay.cpu().numpy()

    @fill_doc
    def get_velocity(
        self,
        adata: AnnData | None = None,
        *,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """``dG/dt`` at every cell under its own condition, ``(n_obs, n_genes)`` float32.

        Raises :class:`~celldyn.nn.SolverDivergedError` if it is not finite.

        Parameters
        ----------
        adata
            AnnData with the model's genes and condition column (default: the training
            data); checked before it is registered with the model.
        {indices}
        {batch_size}
        """
        with registered(self, adata, self._check_adata) as adata:
            cells = check_indices(indices, adata.n_obs)
            x = self._rows(adata).subset(cells)
            labels = self._cell_conditions(adata)[cells]
            module = self.module.eval()

            def velocity_of(genes, features, is_control):
                offsets = self._offsets(features, is_control.cpu().numpy())
                with module.offsets(*offsets) as field:
                    return field.gene_velocity(genes)

            velocity = batched(
                velocity_of,
                x,
                self._feature_rows(labels).numpy(),
                labels == self.control,
                device=self.device,
                batch_size=batch_size,
            ).astype(np.float32)
            if not np.all(np.isfinite(velocity)):
                raise SolverDivergedError("The FLeCS drug velocity has NaN or infinite values.")
        return velocity

    @torch.no_grad()
    def predict_trajectories(
        self,
        x0: np.ndarray,
        times: np.ndarray,
        conditions: Sequence[str] | pd.DataFrame | np.ndarray,
    ) -> np.ndarray:
        """Integrate trajectories from ``x0`` under conditions (named or given by features).

        Parameters
        ----------
        x0
            Start expression ``(n, n_genes)``.
        times
            Non-decreasing times ``(n, length)``; each trajectory starts at its first time.
        conditions
            ``n`` condition names or a feature matrix ``(n, n_features)``, as in
            :meth:`get_offsets`.

        Returns
        -------
        Predicted expression ``(n, length, n_genes)`` float32 (the first point is ``x0``).
        """
        production, decay = (
            torch.as_tensor(a, device=self.device) for a in self.get_offsets(conditions)
        )
        x0 = torch.as_tensor(np.asarray(x0, dtype=np.float32), device=self.device)
        times = torch.as_tensor(np.asarray(times, dtype=np.float32), device=self.device)
        if x0.ndim != 2 or times.ndim != 2 or not len(x0) == len(times) == len(production):
            raise ValueError(
                f"`x0` (n, n_genes), `times` (n, length) and `conditions` (n) must agree; "
                f"got {tuple(x0.shape)}, {tuple(times.shape)} and {len(production)}."
            )
        return self.module.eval().integrate(x0, times, production, decay).cpu().numpy()

    # ------------------------------------------------------------------ contract with tl
    @classmethod
    def results(cls, models: Sequence[FLeCSDrug], key_added: str) -> FitResults:
        """Return what :func:`celldyn.tl.drug_effects` writes for fitted models (one or more).

        Offsets of every condition of ``features`` (genes × conditions DataFrames in
        ``varm``) and velocities, each the mean over the models (one per FLeCS member).
        """
        names = models[0].features.index
        genes = models[0].adata.var_names
        offsets = [m.get_offsets(names.to_numpy()) for m in models]
        varm = {
            _keys.varm.rate_offsets(key_added, rate): pd.DataFrame(
                np.mean([o[j] for o in offsets], axis=0).T,
                index=genes.copy(),
                columns=names.copy(),
            )
            for j, rate in enumerate(("production", "decay"))
        }
        velocity = np.mean([m.get_velocity() for m in models], axis=0, dtype=np.float64)
        return FitResults(
            {"varm": varm},
            uns={"trained_conditions": models[0].trained_conditions_},
            velocity=velocity,
        )
