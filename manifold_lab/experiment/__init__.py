"""YAML experiments: validated specs, sweeps, a resumable results store, reports.

- ``manifold_lab.experiment.spec``    load, merge and validate a spec (``load_spec``)
- ``manifold_lab.experiment.sweep``   grid x seeds expansion and stable run ids
- ``manifold_lab.experiment.store``   the results folder: files, run states, locks
- ``manifold_lab.experiment.runner``  execute the runs (resumable, ``jobs`` processes)
- ``manifold_lab.experiment.progress`` runs done of total, elapsed, time left
- ``manifold_lab.experiment.provenance`` what produced a run (versions, commit, host, device)
- ``manifold_lab.experiment.stats``   mean / std / t and bounded intervals, paired tests over seeds
- ``manifold_lab.experiment.report``  ``summary.csv``, ``comparisons.csv``, ``report.md``

The experiment kinds themselves live in ``manifold_lab.kinds``. The engine
uses the kinds; the kinds never import the runner (``stats`` is theirs to use for intervals).
"""

from manifold_lab.experiment.spec import Spec, load_spec

__all__ = ["Spec", "load_spec"]
