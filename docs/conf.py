"""Sphinx configuration for celldyn."""

import os
from importlib.metadata import version as _version
from pathlib import Path

# The real-data tutorials read the project's copies of the datasets when they are there
# (the loaders' cache directory, see celldyn.datasets.get_cache_dir), else they download.
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if _SHARED_DATA.is_dir():
    os.environ.setdefault("CELLDYN_DATA", str(_SHARED_DATA))

project = "celldyn"
author = "celldyn developers"
release = _version("celldyn")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
]
autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# Returns sections are prose (what is written where), not "name : type" fields: render as written.
napoleon_custom_sections = [("Returns", "returns_as_written")]
typehints_document_rtype = False  # the return type is in the signature
myst_enable_extensions = ["dollarmath", "colon_fence"]
nb_execution_mode = "cache"
nb_execution_timeout = 600
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute", ".jupyter_cache"]
html_theme = "sphinx_book_theme"
html_title = "celldyn"
intersphinx_mapping = {
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "python": ("https://docs.python.org/3", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvelo": ("https://scvelo.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
}
