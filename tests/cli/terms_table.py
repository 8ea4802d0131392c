"""docs/terms.md's option table, read: one `Row` per option (its panel, metavar, default and old spellings), each
cell with the commands that differ from it (tests/cli/test_option_terms.py, test_help_pages.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TERMS = Path(__file__).resolve().parents[2] / "docs" / "terms.md"


@dataclass(frozen=True)
class Cell:
    """A table cell: the value every command has (`None`: no default), and the commands that differ."""

    value: str | None
    differ: dict[str, str | None]

    def of(self, command: str) -> str | None:
        return self.differ.get(command, self.value)


@dataclass(frozen=True)
class Row:
    option: str
    panel: str
    metavar: Cell
    default: Cell
    old: tuple[str, ...]


def _value(text: str) -> str | None:
    """`X` -> X (a markdown `\\|` is a `|`); none -> None."""
    text = text.strip()
    if text == "none":
        return None
    return text.strip("`").replace("\\|", "|")


def cell(text: str) -> Cell:
    """`X`, none or the command's own, then optionally `(CMD: `Y`; CMD, CMD: none)`."""
    text = text.strip().replace("\\|", "\x00")
    main, _, rest = text.partition(" (")
    differ = {}
    for part in filter(None, (p.strip() for p in rest.rstrip(")").split(";"))):
        names, _, value = part.partition(": ")
        for name in names.split(","):
            differ[name.strip()] = _value(value.replace("\x00", "\\|"))
    return Cell(_value(main.replace("\x00", "\\|")), differ)


def table(text: str) -> list[Row]:
    """The rows of terms.md's "Option names" table (idea | option | panel | metavar | default | old | note)."""
    section = text.split("## Option names", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) == 7 and cells[1].startswith("`--"):
            rows.append(Row(cells[1].strip("`"), cells[2], cell(cells[3]), cell(cells[4]),
                            tuple(re.findall(r"`(--[a-z0-9-]+)", cells[5]))))
    return rows
