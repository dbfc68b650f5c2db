"""Execution: a validated spec's runs planned into a results folder and run there.

- ``store``       the results folder: its files, run states, locks
- ``runner``      run the plan, resumably, in ``jobs`` worker processes (``run_experiment``)
- ``one_run``     one run: its lock, files, log, provenance (read as it starts) and outcome
- ``batch``       several compatible runs trained together (``--batch-runs``), one folder each
- ``workers``     the worker processes and the signals that end them
- ``launch``      the same runs through submitit: a Slurm job array or local processes
- ``ownership``   which experiment a results folder belongs to
- ``progress``    runs done of total, elapsed, time left
- ``provenance``  what produced a run (versions, commit, host, device, command)

Built on the language (``manifold_lab.spec``) and the kinds; it never imports the
reporting: a caller that wants the report after the runs passes its writer
(``run_experiment(..., report=write_report)``).
"""
