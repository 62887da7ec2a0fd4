"""What Zeppelin 0.11 does with a note, re-done from its source for the tests (no Zeppelin server can be
installed here):

- the note file: the keys and types Gson gives ``Note`` and ``Paragraph`` (zeppelin-zengine
  notebook/Note.java, Paragraph.java), and no stored results or dates;
- the paragraph prefix: ``ParagraphTextParser`` (``^(\\s*)%([a-zA-Z0-9_\\-]+(?:\\.\\w+)*)``, then optional
  ``(key=value, ...)`` local properties right after the name);
- interpreter resolution: ``InterpreterFactory.getInterpreter`` (no prefix -> the default interpreter
  of the note's group, Scala for ``spark``; ``group.name``; a bare name inside the default group first);
- execution: ``%spark.pyspark`` paragraphs in one shared namespace with ``spark``, ``sc`` and ``z``;
  ``%spark.sql`` on the same session rendered like ``Spark3Shims.showDataFrame``; ``%md`` as text;
- output: ``InterpreterOutput`` (``%type`` switches only at a line start; a ``%table`` ends at an empty
  line), ``z.show`` of a pandas frame as ``PyZeppelinContext.show_dataframe`` (capped at maxResult).
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass, field
from typing import Any, Optional

REPL_PATTERN = re.compile(r"^(\s*)%([a-zA-Z0-9_\-]+(?:\.\w+)*)")
MAX_RESULT = 1000
# interpreter-setting.json of the groups EMR's Zeppelin has, in order (the first is the group's default)
GROUPS = {"spark": ["spark", "sql", "pyspark", "ipyspark", "r", "ir", "shiny", "kotlin"], "md": ["md"],
          "python": ["python", "ipython", "sql"], "sh": ["sh"]}
RUNNABLE = {("spark", "pyspark"), ("spark", "sql"), ("md", "md")}

NOTE_KEYS = {"paragraphs": list, "name": str, "id": str, "defaultInterpreterGroup": str, "version": str,
             "noteParams": dict, "noteForms": dict, "angularObjects": dict, "config": dict, "info": dict}
PARAGRAPH_KEYS = {"title": str, "text": str, "id": str, "config": dict, "settings": dict}
CONFIG_KEYS = {"editorSetting": dict, "colWidth": float, "editorMode": str, "fontSize": float, "title": bool,
               "editorHide": bool, "results": dict, "enabled": bool}
STORED_RUN_STATE = ("results", "dateCreated", "dateStarted", "dateFinished", "dateUpdated", "status",
                    "errorMessage", "user", "progress", "jobName")


class NoteError(Exception):
    pass


@dataclass
class Paragraph:
    title: str
    group: str
    name: str
    script: str
    properties: dict[str, str]


@dataclass
class Output:
    blocks: list[tuple[str, str]] = field(default_factory=list)     # (type, data) as Zeppelin splits them

    def of(self, kind: str) -> list[str]:
        return [d for t, d in self.blocks if t == kind]


def parse_local_properties(text: str, start: int) -> tuple[int, dict[str, str]]:
    """``(k=v, k2="v,2", flag)`` from ``text[start] == "("``; returns the index after ``)``."""
    props: dict[str, str] = {}
    i, quoted, buf, key = start + 1, False, [], None

    def flush():
        nonlocal buf, key
        word = "".join(buf).strip()
        if key is None:
            if word:
                props[word] = word
        else:
            props[key] = word
        buf, key = [], None

    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            buf.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif quoted:
            buf.append(ch)
        elif ch == ")":
            flush()
            return i + 1, props
        elif ch == ",":
            flush()
        elif ch == "=":
            if key is not None:
                raise NoteError("Invalid paragraph properties format")
            key, buf = "".join(buf).strip(), []
        else:
            buf.append(ch)
        i += 1
    raise NoteError("Not finished interpreter configuration")


def parse_text(text: str) -> tuple[str, str, dict[str, str]]:
    """(interpreter text, script, local properties) as ParagraphTextParser.parse gives them."""
    m = REPL_PATTERN.match(text)
    if not m:
        return "", text.lstrip(" "), {}
    intp = m.group(2)
    start = len(m.group(1)) + len(intp) + 1
    props: dict[str, str] = {}
    if start < len(text) and text[start] == "(":
        start, props = parse_local_properties(text, start)
    return intp, text[start:].lstrip(" "), props


def resolve(intp: str, default_group: str) -> tuple[str, str]:
    """(group, interpreter name) the way InterpreterFactory.getInterpreter resolves a paragraph."""
    if not intp:
        return default_group, GROUPS[default_group][0]
    parts = intp.split(".")
    if len(parts) == 2:
        if parts[0] in GROUPS and parts[1] in GROUPS[parts[0]]:
            return parts[0], parts[1]
    elif len(parts) == 1:
        if intp in GROUPS.get(default_group, []):
            return default_group, intp
        if intp in GROUPS:
            return intp, GROUPS[intp][0]
    raise NoteError(f"No such interpreter: {intp}")


def check_types(where: str, doc: dict, keys: dict[str, type]) -> None:
    for key, kind in keys.items():
        if key not in doc:
            raise NoteError(f"{where}: missing key {key!r}")
        value = doc[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
        if not ok:
            raise NoteError(f"{where}: {key!r} is {type(value).__name__}, Zeppelin's model has {kind.__name__}")


def parse_note(text: str, default_group_on_import: str = "spark") -> tuple[dict, list[Paragraph]]:
    """Check a .zpln as Zeppelin would load it and as an import treats it (the note's own default group
    is dropped on import, so paragraphs resolve in the server's default group, ``spark``)."""
    doc = json.loads(text)
    check_types("note", doc, NOTE_KEYS)
    if not doc["name"].strip():
        raise NoteError("note: empty name (an import without notePath would fail)")
    paragraphs = []
    for i, p in enumerate(doc["paragraphs"]):
        where = f"paragraph {i} ({p.get('title', '?')})"
        check_types(where, p, PARAGRAPH_KEYS)
        check_types(where + " config", p["config"], CONFIG_KEYS)
        check_types(where + " settings", p["settings"], {"params": dict, "forms": dict})
        stored = [k for k in STORED_RUN_STATE if k in p]
        if stored:
            raise NoteError(f"{where}: run state stored in the note: {stored}")
        intp, script, props = parse_text(p["text"])
        if not intp:
            raise NoteError(f"{where}: no interpreter prefix; Zeppelin would run it with the default "
                            f"interpreter of group '{default_group_on_import}' (Scala)")
        for group in {default_group_on_import, doc["defaultInterpreterGroup"]}:
            g, name = resolve(intp, group)
            if (g, name) not in RUNNABLE:
                raise NoteError(f"{where}: %{intp} resolves to {g}.{name}, which this project does not use")
        paragraphs.append(Paragraph(p["title"], g, name, script, props))
    return doc, paragraphs


# ---------------------------------------------------------------------------------------------- running

def _cell(value: Any) -> str:
    return "null" if value is None else str(value).replace("\t", " ").replace("\r\n", " ").replace("\n", " ")


class FakeZeppelinContext:
    """The parts of PyZeppelinContext the notes use: forms (their default, or a value the test sets, as
    a user would in the form) and show (as show_dataframe / showData render)."""

    def __init__(self, spark, values: Optional[dict[str, str]] = None):
        self.spark = spark
        self.values = values or {}
        self.forms: dict[str, Any] = {}
        self.shown: list[Any] = []

    def textbox(self, name: str, defaultValue: str = "") -> str:
        self.forms[name] = defaultValue
        return self.values.get(name, defaultValue)

    input = textbox

    def select(self, name: str, options, defaultValue: str = ""):
        self.forms[name] = defaultValue
        return self.values.get(name, defaultValue)

    def show(self, p: Any, **kwargs: Any) -> None:
        self.shown.append(p)
        if hasattr(p, "_jdf"):
            print(render_spark(p))
        elif "DataFrame" in [t.__name__ for t in type(p).mro()]:
            print(render_pandas(p))
            if len(p) > MAX_RESULT:
                print(f"\n%html <font color=red>Results are limited by {MAX_RESULT}.</font>")
        else:
            print(str(p))


def render_pandas(df) -> str:
    header = "\t".join(_cell(c) for c in df.columns)
    rows = df.head(MAX_RESULT).values
    body = "\n".join("\t".join(_cell(v) for v in row) for row in rows)
    return "%table " + header + "\n" + body


def render_spark(df) -> str:
    rows = df.take(MAX_RESULT + 1)
    out = ["%table " + "\t".join(_cell(c) for c in df.columns)]
    out += ["\t".join(_cell(v) for v in row) for row in rows[:MAX_RESULT]]
    text = "\n".join(out) + "\n"
    if len(rows) > MAX_RESULT:
        text += "\n%html <strong>Output is truncated</strong> to 1000 rows.\n"
    return text + "\n%text "


def split_output(text: str) -> Output:
    """Split a paragraph's output into typed blocks as InterpreterOutput does."""
    out = Output()
    kind, buf, in_table = "TEXT", [], False
    for line in text.split("\n"):
        m = re.match(r"^%(text|html|table|img|angular|md)( |$)", line)
        if m and (not in_table or not buf or buf[-1] == ""):
            if "".join(buf).strip():
                out.blocks.append((kind, "\n".join(buf).strip("\n")))
            kind, buf = m.group(1).upper(), [line[m.end():]]
            in_table = kind == "TABLE"
            continue
        if in_table and line == "" and buf and buf[-1] == "":
            in_table = False
        buf.append(line)
    if "".join(buf).strip():
        out.blocks.append((kind, "\n".join(buf).strip("\n")))
    return out


def png_images(output: Output) -> list[bytes]:
    """The PNGs of the ``%html`` blocks (``<img src="data:image/png;base64,...">``)."""
    found = []
    for html in output.of("HTML"):
        for b64 in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html):
            found.append(base64.b64decode(b64, validate=True))
    return found


def run_note(text: str, spark, form_values: Optional[dict[str, str]] = None) -> list[tuple[Paragraph, Output]]:
    """Every paragraph in order in one namespace; the first failure raises NoteError with its title."""
    doc, paragraphs = parse_note(text)
    z = FakeZeppelinContext(spark, form_values)
    namespace: dict[str, Any] = {"spark": spark, "sc": spark.sparkContext, "sqlContext": spark, "z": z,
                                 "__name__": "__main__"}
    results = []
    for i, p in enumerate(paragraphs):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                if p.name == "pyspark":
                    exec(compile(p.script, f"<{doc['name']} / {p.title}>", "exec"), namespace)
                elif p.name == "sql":
                    print(render_spark(spark.sql(p.script)))
                else:
                    print("%md " + p.script)
        except Exception as exc:
            raise NoteError(f"{doc['name']}: paragraph {i} '{p.title}' failed: {type(exc).__name__}: {exc}") from exc
        results.append((p, split_output(buf.getvalue())))
    return results


# ---------------------------------------------------------------------------------------------- REST

class FakeZeppelin(BaseHTTPRequestHandler):
    """Zeppelin 0.11's REST answers for what deploy uses; records every request."""

    def log_message(self, *args):
        pass

    def _send(self, code, doc, cookie=None):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if cookie:
            self.send_header("Set-Cookie", f"JSESSIONID={cookie}; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        srv.requests.append((self.command, self.path, body, self.headers.get("Cookie"),
                             self.headers.get("Content-Type")))
        if self.path == "/api/login" and self.command == "POST":
            from urllib.parse import parse_qs

            form = parse_qs(body.decode())
            if form.get("userName") == ["analyst"] and form.get("password") == ["s3cret"]:
                return self._send(200, {"status": "OK", "message": "", "body": {"principal": "analyst"}}, "abc123")
            return self._send(403, {"status": "FORBIDDEN", "message": ""})
        if srv.auth and self.headers.get("Cookie") != "JSESSIONID=abc123":
            return self._send(302, {"status": "FOUND"})
        if self.path == "/api/notebook" and self.command == "GET":
            return self._send(200, {"status": "OK", "message": "", "body": [
                {"id": i, "path": p} for i, p in sorted(srv.notes.items(), key=lambda kv: kv[1])]})
        if self.path.startswith("/api/notebook/import?") and self.command == "POST":
            from urllib.parse import parse_qs, urlparse

            path = parse_qs(urlparse(self.path).query)["notePath"][0]
            json.loads(body)                                   # Gson would refuse anything else
            if path in srv.notes.values():
                return self._send(500, {"exception": "IOException",
                                        "message": f"java.io.IOException: Fail to import note: Note '{path}' existed"})
            new_id = f"2N{len(srv.requests):07d}"
            srv.notes[new_id] = path
            return self._send(200, {"status": "OK", "message": "", "body": new_id})
        if self.path.startswith("/api/notebook/") and self.command == "DELETE":
            note_id = self.path.rsplit("/", 1)[1]
            if note_id not in srv.notes:
                return self._send(404, {"status": "NOT_FOUND", "message": f"No such note: {note_id}"})
            del srv.notes[note_id]
            return self._send(200, {"status": "OK", "message": ""})
        return self._send(404, {"status": "NOT_FOUND", "message": self.path})

    do_GET = do_POST = do_DELETE = _handle


@contextlib.contextmanager
def fake_zeppelin(notes: dict[str, str], auth: bool = True):
    """A Zeppelin REST server on 127.0.0.1 (``server.requests``: every request; ``server.notes``: id -> path)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeZeppelin)
    server.requests, server.notes, server.auth = [], dict(notes), auth
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
