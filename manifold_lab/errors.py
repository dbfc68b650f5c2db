"""The one exception type the command line turns into a one-line message.

``UsageError`` subclasses ``ValueError`` so library callers can catch either.
Raise it (or a plain ``ValueError``) for any bad input: the ``manifold-lab``
command prints ``manifold-lab <command>: error: <message>`` to stderr and
exits with status 2, without a traceback.
"""


class UsageError(ValueError):
    """Bad input from a user: wrong argument, config value, path or file."""
