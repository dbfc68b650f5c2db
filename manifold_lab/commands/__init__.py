"""Sub-commands of ``manifold-lab``; see ``manifold_lab.cli`` for the protocol."""
