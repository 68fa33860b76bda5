r"""Perturbation responses of fitted models: initial velocities and steady-state shifts.

For every perturbation :math:`q` a model gives :math:`v_q`, the change of its drift at the
control steady state, and :math:`l_q`, the shift of its steady state; CLIPR
(:func:`celldyn.tl.clipr_effects`) turns them into a causal effect matrix. Each model
computes its own (``perturbation_responses`` of :class:`~celldyn.models.LCD`,
:class:`~celldyn.models.FLeCS` and :class:`~celldyn.models.CellMNN`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._validate import check_positive

if TYPE_CHECKING:  # the models load scvi-tools; `celldyn.tl` stays light
    from ..models import PerturbationResponses


def check_model(model) -> None:
    """Raise unless ``model`` is a trained model with perturbation responses."""
    if not callable(getattr(model, "perturbation_responses", None)):
        raise TypeError(
            "`model` must be a trained model with perturbation responses (LCD, FLeCS or "
            f"CellMNN), got {type(model).__name__}."
        )
    if not getattr(model, "is_trained_", False):
        raise ValueError(f"The {type(model).__name__} model is not trained; call `train` first.")


def perturbation_responses(
    model,
    perturbations: Sequence[str] | None = None,
    *,
    strength: float = 0.1,
    start: np.ndarray | None = None,
    loadings: str = "PCs",
    n_samples: int = 500,
    random_state: int = 0,
) -> PerturbationResponses:
    r"""Compute the initial velocities and steady-state shifts of a model's perturbations.

    These are the inputs of :func:`celldyn.tl.clipr_effects`.

    - LCD: perturbations are condition labels (``'A'``, ``'A+B'``; default every trained
      condition); :math:`l_q` is the shift of the mean latent state (fitted states for trained
      conditions, ``n_samples`` stationary samples otherwise) and :math:`v_q` the change of
      the control drift when its law is translated by :math:`l_q`,
      :math:`f_{ctrl}(x - l_q) - f_{ctrl}(x) \approx -J_f(x)\,l_q`, mean over the control
      cells' fitted states (:meth:`~celldyn.models.LCD.get_drift_response`; exact for shift
      interventions on a linear diffusion, where :math:`f_q(x) = f_{ctrl}(x - l_q)`). CLIPR
      then returns the mean Jacobian of the learnt drift at the control cells.
      ``strength``, ``start`` and ``loadings`` do not apply.
    - FLeCS: knocking down gene :math:`j` adds ``-strength`` to its production input
      (:attr:`~celldyn.nn.GRNVectorField.production_offset`). The control steady state
      :math:`G^*` is the fixed point reached by integrating the ODE from ``start``, the
      perturbed one by integrating from :math:`G^*`; :math:`v_q = f_q(G^*) - f(G^*)` and
      :math:`l_q` is the difference of the fixed points.
    - Cell-MNN: the mean operator in gene space :math:`M` (the transpose of
      :meth:`~celldyn.models.CellMNN.get_interactions`) is the linear drift
      :math:`dx/dt = M (x - x^*)`; knocking down gene :math:`j` adds
      :math:`c_q = -\mathrm{strength}\,e_j`, so :math:`v_q = c_q` and
      :math:`l_q = -M^{+} c_q`. :math:`M` acts on the span of the loadings only, so the
      shifts span ``rank(M)`` dimensions (``min_rank``).

    Parameters
    ----------
    model
        A trained :class:`~celldyn.models.LCD`, :class:`~celldyn.models.FLeCS` or
        :class:`~celldyn.models.CellMNN`.
    perturbations
        LCD: condition labels. FLeCS, Cell-MNN: genes knocked down, one perturbation each;
        default every gene of the model.
    strength
        Knockdown size: the production offset (FLeCS) or the constant drift shift (Cell-MNN).
        The CLIPR identity is exact for a linear drift and first-order otherwise, so small
        values recover the Jacobian of a nonlinear model at its control steady state.
    start
        FLeCS: ``(n_genes,)`` expression the control steady state is searched from; default
        the mean expression of the model's training cells.
    loadings
        Cell-MNN: key of ``model.adata.varm`` with the loadings of its representation.
    n_samples, random_state
        LCD: stationary samples per condition absent from training, and their seed.

    Returns
    -------
    :class:`~celldyn.models.PerturbationResponses` with labels, velocities, shifts, the
    control steady state, the rank the shifts need and the interventions' measured targets.
    """
    check_model(model)
    check_positive(strength, "strength")
    options = {
        "strength": strength,
        "start": start,
        "loadings": loadings,
        "n_samples": n_samples,
        "random_state": random_state,
    }
    accepted = inspect.signature(model.perturbation_responses).parameters
    return model.perturbation_responses(
        perturbations, **{k: v for k, v in options.items() if k in accepted}
    )
