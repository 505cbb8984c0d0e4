"""Themes are data: no module outside the registry and a theme's own workflow names a theme.

The scanner reads Python modules with `ast` (identifiers and string literals, so SQL in
strings counts; comments and docstrings do not) and the service's own HTML templates and
scripts as text, and looks for what identifies a theme: its temakode, GeoFA view and table
names, its collection id, its base table, and its own attribute names (those not shared by
every theme). It is first shown to find a planted reference (and nothing in a clean module)
before its verdict on the code base is trusted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from datamodel import themes

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("service", "datamodel", "loaders", "cli")

#: Where naming a theme is the point: the registry, the migrations (one per theme, calling
#: the storage helper), and each theme's own workflow, with the reason.
ALLOWED = {
    "datamodel/themes": "the registry: the themes' descriptors",
    "datamodel/migrations": "each theme's migration calls the storage helper for it",
    # 6101/6122: the inspection workflow of shelters (betondækningsgrave, GeoFA 6122)
    "datamodel/checklist.py": "6122 inspection checklists",
    "datamodel/checklists": "6122 inspection checklists",
    "service/inspections.py": "6101/6122 inspections",
    "service/campaigns.py": "6101 inspection campaigns",
    "service/openapi_eftersyn.py": "the OpenAPI schemas of the 6101/6122 inspection workflow",
    "service/static/eftersyn": "the inspector's offline form",
    "service/templates/eftersyn_formular.html": "the inspector's offline form",
    "service/templates/report_kampagne.html": "the inspection campaign report",
    "loaders/reports_beskyttelsesrum.py": "6101's own report: coverage, classification and "
                                          "inspection figures",
    "service/reports_beskyttelsesrum.py": "6101's own report: coverage, classification and "
                                          "inspection figures",
    "service/templates/_report_beskyttelsesrum_kommune.html":
        "6101's own report: coverage, classification and inspection figures",
    "service/templates/_report_beskyttelsesrum_national.html":
        "6101's own report: coverage, classification and inspection figures",
    "loaders/planning_beskyttelsesrum.py": "6101's planning profile: which shelters count "
                                           "(functional status) and the scenarios after the "
                                           "inspections (suitability, type)",
    # 6101: imports from BBR and municipal shelter lists, and the GeoFA sync of 6101 (made
    # theme-ready, not yet offered for other themes)
    "loaders/bbr.py": "BBR sikringsrum import (6101)",
    "loaders/municipal_list.py": "municipal shelter lists (6101)",
    "loaders/bulk_list.py": "municipal shelter lists (6101), column-wise path",
    "loaders/initial_load.py": "municipal shelter lists (6101), first load",
    "loaders/staging.py": "import runs of 6101 lists and BBR",
    "loaders/geofa/sync.py": "GeoFA two-way sync of 6101",
    "loaders/geofa/standin.py": "a stand-in GeoFA server for the 6101 sync tests",
    "loaders/geofa/client.py": "GeoFA client of the 6101 sync",
    "service/runs.py": "import runs of 6101 lists and BBR",
    "cli/main.py": "the CLI's 6101 workflow commands (import-list, bbr, sync)",
    # Each theme's demo generator, named by its descriptor (`Theme.demo`)
    "loaders/demo.py": "the themes' demo generators",
}


def _shared_attributes() -> set[str]:
    every = [set(t.fields_by_name) | t.twin_names for t in themes.all_themes()]
    return set.intersection(*every)


def theme_markers() -> dict[str, re.Pattern]:
    """theme id -> a pattern matching what names that theme."""
    shared = _shared_attributes()
    out = {}
    for t in themes.all_themes():
        words = {str(t.temakode), t.geofa_view, t.temanavn, t.table, t.collection_id,
                 t.current_view, t.history_view, t.public_current_view, t.public_history_view}
        own = {n for n in (set(t.fields_by_name) | t.twin_names) - shared
               if "_" in n or len(n) >= 7}
        words |= own
        alternatives = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
        out[t.collection_id] = re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def scan_python(source: str, markers: dict[str, re.Pattern]) -> list[tuple[int, str, str]]:
    """(line, theme, text) for every identifier or string literal naming a theme."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) \
                and id(node) not in skip and not isinstance(node.value, bool):
            texts.append(str(node.value))
        elif isinstance(node, ast.Name):
            texts.append(node.id)
        elif isinstance(node, ast.Attribute):
            texts.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts.append(node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            texts.append(node.arg)
        for text in texts:
            for theme, pattern in markers.items():
                m = pattern.search(text)
                if m:
                    hits.append((getattr(node, "lineno", 0), theme, m.group(0)))
    return hits


def scan_text(source: str, markers: dict[str, re.Pattern]) -> list[tuple[int, str, str]]:
    source = re.sub(r"<!--.*?-->|\{#.*?#\}|/\*.*?\*/", "", source, flags=re.S)
    hits = []
    for lineno, line in enumerate(source.splitlines(), 1):
        line = re.sub(r"(^|\s)//.*$", "", line)
        for theme, pattern in markers.items():
            m = pattern.search(line)
            if m:
                hits.append((lineno, theme, m.group(0)))
    return hits


def _allowed(rel: str) -> bool:
    return any(rel == a or rel.startswith(a + "/") for a in ALLOWED)


def modules() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if "vendor" in path.parts or "__pycache__" in path.parts or _allowed(rel):
                continue
            if path.suffix == ".py" or (top == "service" and path.suffix in (".html", ".js")):
                out.append(path)
    return out


def test_the_scanner_finds_a_planted_reference():
    markers = theme_markers()
    planted = (
        '"""A docstring may say t_6101_beskyt_rum."""\n'
        "# so may a comment: beskyttelsesrum\n"
        "from psycopg import sql\n"
        "STMT = sql.SQL('SELECT pladser FROM ly.t_6119_evaku_centr')\n"
        "def f(theme):\n"
        "    return theme.fields_by_name['sua_kode']\n")
    hits = scan_python(planted, markers)
    assert {(h[1], h[2]) for h in hits} == {
        ("beskyttelsesrum", "pladser"), ("evakueringscenter", "t_6119_evaku_centr"),
        ("stoerre_udendoers_arrangementer", "sua_kode")}
    clean = ('"""Generic: beskyttelsesrum in a docstring is fine."""\n'
             "def title(theme):\n    return theme.title + theme.fields_by_name['off_kode'].title\n")
    assert scan_python(clean, markers) == []
    assert scan_text("<p>{{ theme.title }}</p>\n<p>Antal pladser</p>", markers) == [
        (2, "beskyttelsesrum", "pladser")]
    assert scan_text("<!-- 6101 -->\n<p>{{ theme.title }}</p>", markers) == []


def test_no_module_outside_the_registry_and_workflows_names_a_theme():
    markers = theme_markers()
    found = []
    for path in modules():
        source = path.read_text(encoding="utf-8")
        hits = scan_python(source, markers) if path.suffix == ".py" else \
            scan_text(source, markers)
        rel = path.relative_to(ROOT).as_posix()
        found += [f"{rel}:{line}: {theme} ({text})" for line, theme, text in hits]
    assert not found, "modules naming a theme:\n" + "\n".join(sorted(set(found)))


def test_allowed_paths_exist():
    """An allowance for a module that no longer exists is a stale exception."""
    for rel in ALLOWED:
        assert (ROOT / rel).exists(), rel


@pytest.mark.parametrize("name", ["SHELTER_FIELDS", "FIELDS_BY_NAME", "WRITABLE_FIELDS",
                                  "PUBLIC_FIELDS", "TEMAKODE", "COLLECTION_ID"])
def test_no_shelter_only_module_constants(name):
    """The shelter-only globals the registry replaced are gone everywhere."""
    users = [p.relative_to(ROOT).as_posix() for top in (*SCANNED, "tests", "bench")
             for p in (ROOT / top).rglob("*.py")
             if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"))
             and p.name != "test_layout_themes.py"]
    assert users == []
