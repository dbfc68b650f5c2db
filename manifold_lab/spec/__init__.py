"""The experiment language: what a study is, before anything runs.

- ``load``      ``load_spec``: a YAML file merged with its presets and overrides, validated (``Spec``)
- ``sources``   where every value came from (file:line:column, override), includes, overrides
- ``checks``    one-line explanations of what is wrong, the sweep's and the contrast's checks
- ``sweep``     the grid x seeds expansion (``plan``) and stable run ids
- ``bounds``    the limits on a spec and on the work it may ask for
- ``launcher``  the ``launcher:`` section (``--launcher slurm`` / ``local``)
- ``suite``     a file that names several experiment files (the quickstart tour)

It knows nothing of how runs execute (``manifold_lab.execution``) or are reported
(``manifold_lab.reporting``); of the library it uses only the kinds' parameter models.
"""

from manifold_lab.spec.load import Spec, load_spec
from manifold_lab.spec.sources import display_path

__all__ = ["Spec", "display_path", "load_spec"]
