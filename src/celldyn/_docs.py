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
    "doc_copy",
    "doc_key_added",
    "doc_lightning_kwargs",
    "doc_random_state",
    "fill_doc",
]

F = TypeVar("F", bound=Callable)

doc_adata = """\
adata
    Annotated data matrix (cells × genes)."""

doc_copy = """\
copy
    Return a modified copy of ``adata`` instead of writing into it."""

doc_key_added = """\
key_added
    Prefix of the keys written into ``adata`` (see Returns)."""

doc_random_state = """\
random_state
    Seed of the random numbers; the same seed gives the same result."""

doc_lightning_kwargs = """\
**lightning_kwargs
    Training options shared by every model, with their defaults (see
    :meth:`~celldyn.models._training.TrainingMixin._fit`):

    - ``accelerator='auto'``, ``devices='auto'``: Lightning's device settings.
    - ``early_stopping=False``, ``early_stopping_patience=10``: stop when the validation
      loss has not improved for that many epochs (needs ``validation_size > 0``).
    - ``progress=None``: show Lightning's progress bar; ``None``: only in a Jupyter
      notebook (Lightning's ``enable_progress_bar`` is accepted for it).
    - ``plan_kwargs=None``: passed to scvi-tools' ``TrainingPlan``.
    - any other keyword (``strategy='ddp'``, ``callbacks``, ...): passed to Lightning's
      ``Trainer``."""

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
    obj.__doc__ = _MARKER.sub(lambda m: _indented(SNIPPETS[m["name"]], m["indent"]), doc)
    return obj
