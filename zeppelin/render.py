"""Turn the notes of :mod:`zeppelin.notes` into Zeppelin ``.zpln`` notes and Jupyter notebooks (pure).

The output is deterministic (no dates, results or random ids), so the files kept in the repository can
be checked against their source: ``ctr-pipeline notes build --check``.

Zeppelin: every paragraph carries an explicit interpreter (``%spark.pyspark``, ``%spark.sql``, ``%md``)
because an import drops the note's default interpreter group and a paragraph without a prefix would
run as Scala. Parameters are Zeppelin text-box forms.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from .notes import NOTES, Note, Para

ZEPPELIN_DIR = "notes"          # below zeppelin/: the .zpln files
JUPYTER_DIR = "notebooks"       # below zeppelin/: the .ipynb files
FOLDER = "ctr-pipeline"         # Zeppelin folder the notes are imported into
ZEPPELIN_VERSION = "0.11.1"     # EMR 7's Zeppelin
PREFIX = {"py": "%spark.pyspark", "sql": "%spark.sql", "md": "%md"}
EDITOR = {"py": ("python", "ace/mode/python"), "sql": ("sql", "ace/mode/sql"), "md": ("markdown", "ace/mode/markdown")}


def note_id(note: Note) -> str:
    """A stable 9-character id in Zeppelin's style (Zeppelin makes a new one on import)."""
    digest = hashlib.sha256(note.slug.encode()).digest()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:9])


def note_path(note: Note) -> str:
    return f"/{FOLDER}/{note.name}"


def _split(note: Note) -> tuple[list[Para], list[Para]]:
    """The leading markdown paragraphs, and the rest (the setup paragraph goes between)."""
    i = 0
    while i < len(note.paras) and note.paras[i].kind == "md":
        i += 1
    return list(note.paras[:i]), list(note.paras[i:])


def zeppelin_setup(note: Note) -> str:
    lines = ["from zeppelin import analysis as A", "from zeppelin.display import ZeppelinDisplay, param", "",
             "show = ZeppelinDisplay(z)"]
    lines += [f"{p.name} = z.textbox({p.name!r}, param({p.name!r}, {p.default!r}))  # {p.label}" for p in note.params]
    return "\n".join(lines)


def _paragraph(note: Note, i: int, kind: str, title: str, body: str) -> dict:
    language, mode = EDITOR[kind]
    return {"title": title, "text": f"{PREFIX[kind]}\n{body}", "id": f"paragraph_{note.slug}_{i:02d}",
            "config": {"editorSetting": {"language": language, "editOnDblClick": kind == "md",
                                         "completionKey": "TAB", "completionSupport": kind != "md"},
                       "colWidth": 12.0, "editorMode": mode, "fontSize": 9.0, "title": True,
                       "editorHide": kind == "md", "results": {}, "enabled": True},
            "settings": {"params": {}, "forms": {}}}


def zpln(note: Note) -> dict:
    head, rest = _split(note)
    items = [(p.kind, p.title, p.text) for p in head] + [("py", "Setup", zeppelin_setup(note))]
    items += [(p.kind, p.title, p.text) for p in rest]
    return {"paragraphs": [_paragraph(note, i, *item) for i, item in enumerate(items)],
            "name": f"{FOLDER}/{note.name}", "id": note_id(note), "defaultInterpreterGroup": "spark",
            "version": ZEPPELIN_VERSION, "noteParams": {}, "noteForms": {}, "angularObjects": {},
            "config": {"isZeppelinNotebookCronEnable": False}, "info": {}}


def zpln_text(note: Note) -> str:
    return json.dumps(zpln(note), indent=2) + "\n"


def ipynb_text(note: Note) -> str:
    import nbformat
    from nbformat import v4

    head, rest = _split(note)
    cells = [v4.new_markdown_cell(p.text) for p in head]
    params = ["from zeppelin.display import param", ""]
    params += [f"{p.name} = param({p.name!r}, {p.default!r})  # {p.label}" for p in note.params]
    cells.append(v4.new_code_cell("\n".join(params), metadata={"tags": ["parameters"]}))
    cells.append(v4.new_code_cell("from zeppelin import analysis as A\nfrom zeppelin.display import "
                                  "JupyterDisplay, notebook_spark\n\nspark = notebook_spark()\nshow = JupyterDisplay()"))
    for p in rest:
        if p.kind == "md":
            cells.append(v4.new_markdown_cell(p.text))
        elif p.kind == "sql":
            cells.append(v4.new_code_cell(f'# {p.title}\nshow.table(spark.sql("""\n{p.text}\n"""))'))
        else:
            cells.append(v4.new_code_cell(f"# {p.title}\n{p.text}"))
    for i, cell in enumerate(cells):
        cell["id"] = f"{note.slug}-{i:02d}"
    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}, "title": note.name})
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def outputs(root: Path, notes: Iterable[Note] = NOTES) -> dict[Path, str]:
    """Every file the notes make, by path below ``root`` (the ``zeppelin/`` directory)."""
    out = {}
    for note in notes:
        out[root / ZEPPELIN_DIR / f"{note.slug}.zpln"] = zpln_text(note)
        out[root / JUPYTER_DIR / f"{note.slug}.ipynb"] = ipynb_text(note)
    return out


def build(root: Path) -> list[Path]:
    """Write the files; returns those whose content changed."""
    changed = []
    for path, text in outputs(root).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed


def stale(root: Path) -> list[Path]:
    """Files missing or different from what the source makes (hand edits, or a source not rebuilt)."""
    return [path for path, text in outputs(root).items() if not path.exists() or path.read_text() != text]
