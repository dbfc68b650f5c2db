"""The ``manifold-lab`` command.

Each sub-command is a module in ``manifold_lab.commands`` that defines

    HELP: str                       one line for ``manifold-lab --help``
    add_arguments(parser) -> None   its options (argparse)
    run(args) -> int                the work; returns the exit status

Modules are discovered, so a new command is a new file. Command modules import
heavy libraries (torch, matplotlib) inside ``run`` so ``--help`` stays fast.

Bad input anywhere (a ``ValueError``, including ``manifold_lab.errors.UsageError``,
a file that cannot be read or written, or a size that does not fit in memory)
prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from manifold_lab import __version__, commands


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage block) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())  # an argument may hold a newline ("unrecognized arguments: a\nb")
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="manifold-lab",
        description="How ReLU destroys or keeps the information of low-dimensional manifolds.",
    )
    parser.add_argument("--version", action="version", version=f"manifold-lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = info.name.replace("_", "-")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _prog=p.prog)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # `manifold-lab run x.yaml --list | head`: the reader left; not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{args._prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:  # a size far beyond this machine, e.g. --points 1099511627776
        msg = " ".join(str(exc).split()) or "out of memory"
        print(f"{args._prog}: error: not enough memory for this input ({msg}); use smaller sizes", file=sys.stderr)
        return 2
    except Exception as exc:  # bad input (ValueError), a missing file or folder (OSError), a full disk
        from manifold_lab.io import disk_full

        msg = disk_full(exc, ".")  # also through another error (torch's), with the folder written
        if msg is None and not isinstance(exc, (ValueError, OSError)):
            raise
        msg = msg or " ".join(str(exc).split()) or type(exc).__name__
        print(f"{args._prog}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
