"""Shared numpydoc text of parameters (in the spirit of scanpy's ``_docs.py``).

A docstring names a shared parameter by a marker ``{name}`` alone on a line where its entry
belongs (in a method, the line ``        {lightning_kwargs}`` among the entries of the
Parameters section); :func:`fill_doc` replaces the marker by the text of ``doc_<name>``,
re-indented to the marker's indentation.

Only whole-line markers are replaced (never by :meth:`str.format`), so braces elsewhere in a
docstring (LaTeX, sets) are left alone; a decorated docstring without a marker or with a
marker of an unknown name raises at import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "doc_adata",
    "doc_batch_size",
    "doc_copy",
    "doc_getter_adata",
    "doc_indices",
    "doc_key_added",
    "doc_lightning_kwargs",
    "doc_random_state",
    "doc_show_save",
    "fill_doc",
]

F = TypeVar("F", bound=Callable)

doc_adata = """\
adata
    Annotated data matrix (cells × genes)."""

doc_getter_adata = """\
adata
    AnnData registered with the model (default: the training data)."""

doc_indices = """\
indices
    Cells of ``adata`` to return (positions or a boolean mask; default all)."""

doc_batch_size = """\
batch_size
    Cells per block of the computation (default 4096); the result does not depend
    on it."""

doc_copy = """\
copy
    Return a modified copy of ``adata`` instead of writing into it."""

doc_key_added = """\
key_added
    Prefix of the written keys (see Returns)."""

doc_random_state = """\
random_state
    Seed of the random numbers; the same seed gives the same result."""

doc_lightning_kwargs = """\
**lightning_kwargs
    Training options shared by every model, with their defaults:

    - ``accelerator='auto'``, ``devices='auto'``: Lightning's device settings.
    - ``early_stopping=False``, ``early_stopping_patience=10``: stop when the validation
      loss has not improved for that many epochs (needs ``validation_size > 0``).
    - ``progress=None``: show Lightning's progress bar; ``None``: only in a Jupyter
      notebook (Lightning's ``enable_progress_bar`` is accepted for it).
    - ``plan_kwargs=None``: passed to scvi-tools' ``TrainingPlan``.
    - any other keyword (``strategy='ddp'``, ``callbacks``, ...): passed to Lightning's
      ``Trainer``."""

doc_show_save = """\
show
    Show the figure (:func:`matplotlib.pyplot.show`). ``None``: do not when ``ax`` is given
    (you are composing a figure), else :attr:`scanpy.settings.autoshow`.
save
    Save the figure, as scanpy does: ``True`` writes
    ``{scanpy.settings.figdir}/{function_name}{plot_suffix}.{file_format_figs}``; a string is
    appended to ``{function_name}``, and a figure extension in it (``'_wt.png'``) sets the
    format. ``None``: :attr:`scanpy.settings.autosave`.
return_fig
    Return the :class:`~matplotlib.figure.Figure` (not shown) instead of the axes."""

SNIPPETS = {
    name.removeprefix("doc_"): text
    for name, text in dict(globals()).items()
    if name.startswith("doc_") and isinstance(text, str)
}
"""Marker name (``lightning_kwargs``) -> text of every shared parameter."""

_MARKER = re.compile(r"^(?P<indent>[ \t]*)\{(?P<name>\w+)\}[ \t]*$", re.MULTILINE)


def _indented(text: str, indent: str) -> str:
    """``text`` with ``indent`` before every non-empty line."""
    return "\n".join(indent + line if line.strip() else "" for line in text.splitlines())


def fill_doc(obj: F) -> F:
    """Replace the markers ``{name}`` of ``obj``'s docstring by the shared parameter texts.

    Raises
    ------
    ValueError
        If the docstring has no marker or a marker whose name is not in :data:`SNIPPETS`.
    """
    doc = obj.__doc__
    if doc is None:  # python -OO
        return obj
    markers = list(_MARKER.finditer(doc))
    unknown = sorted({m["name"] for m in markers} - set(SNIPPETS))
    if not markers or unknown:
        what = f"unknown markers {unknown}" if unknown else "no marker"
        raise ValueError(
            f"The docstring of {obj.__qualname__} has {what}; known: {sorted(SNIPPETS)}."
        )

    # a function replacement: the texts are inserted as they are (no format, no escapes)
    def text(marker: re.Match) -> str:
        snippet = SNIPPETS[marker["name"]].replace("{function_name}", obj.__name__)
        return _indented(snippet, marker["indent"])

    obj.__doc__ = _MARKER.sub(text, doc)
    return obj
