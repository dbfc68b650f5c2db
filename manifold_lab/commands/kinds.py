"""``manifold-lab kinds``: the experiment kinds and their parameters (from their schemas)."""

from __future__ import annotations

HELP = "List the experiment kinds and their parameters (name, type, default, description)"


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="show only this kind")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (as in the README)")


def _rows(model, prefix=""):
    """(dotted name, type, default, description) for every field, nested models expanded."""
    from typing import Literal, get_args, get_origin

    from pydantic import BaseModel

    from manifold_lab.activations import canonical_activation

    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _rows(ann, f"{prefix}{name}.")
            continue
        if get_origin(ann) is Literal:
            type_name = " | ".join(map(str, get_args(ann)))
        elif any(getattr(m, "func", None) is canonical_activation for m in field.metadata):
            type_name = "activation"
        else:
            type_name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
        yield f"{prefix}{name}", type_name, field.get_default(call_default_factory=True), field.description or ""


def run(args) -> int:
    from manifold_lab.io import md_cell
    from manifold_lab.kinds import KINDS, get_kind

    names = [get_kind(args.name).name] if args.name else sorted(KINDS)
    for name in names:
        kind = KINDS[name]
        rows = list(_rows(kind.params))
        if args.markdown:
            print(f"#### `{name}`\n\n{kind.description}\n\n| parameter | type | default | meaning |\n|---|---|---|---|")
            for r in rows:  # md_cell: a type such as `int | None` must not split the row
                print(f"| `{r[0]}` | {md_cell(r[1])} | `{md_cell(str(r[2]))}` | {md_cell(r[3])} |")
            print()
        else:
            print(f"{name}: {kind.description}")
            for r in rows:
                print(f"    {r[0]:<28} {r[1]:<18} default {r[2]!r}  {r[3]}")
    return 0
