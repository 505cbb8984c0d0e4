"""Reports: the municipality report (HTML, PDF, JSON) and the national overview, with every
figure checked against the database, computed here in SQL independently of Ly's own.

Reports are for authorities: the public gets 401. A signed-in viewer's report counts what that
viewer may see (row-level security), checked against the items API for the same viewer.
"""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.conftest import ITEMS, bearer, query

KBH, FRB = 101, 147
POPULATION = Path(__file__).resolve().parent.parent / "loaders" / "data" / \
    "dk-population-by-municipality.csv"
COVERED = "funktionsstatus_kode NOT IN (1, 2, 5, 6)"
DECIMALS = {"pladser_pr_1000": 1, "andel_vurderet": 1}


def dk(value, decimals: int = 0) -> str:
    """Danish number format, as the reports print numbers."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def population(kommune: int | None = None) -> int:
    with POPULATION.open(encoding="utf-8") as fh:
        rows = {int(r["kommunekode"]): int(r["folketal"]) for r in csv.DictReader(fh)}
    return rows[kommune] if kommune is not None else sum(rows.values())


def expected_figures(db: str, kommune: int | None) -> dict:
    where = "TRUE" if kommune is None else f"beliggenhedskommune = {int(kommune)}"
    folketal = population(kommune)
    (row,) = query(db, f"""
        SELECT round(coalesce(sum(pladser) FILTER (WHERE {COVERED}), 0) * 1000.0 / %s, 1),
               round(100.0 * count(*) FILTER (WHERE egnethed_kode <> 9) / count(*), 1),
               count(*), coalesce(sum(pladser), 0),
               coalesce(sum(pladser) FILTER (WHERE {COVERED}), 0),
               count(*) FILTER (WHERE beskyt_rum_kode IN (1, 3)),
               coalesce(sum(pladser) FILTER (WHERE beskyt_rum_kode IN (1, 3)), 0),
               count(*) FILTER (WHERE egnethed_kode <> 9),
               count(*) FILTER (WHERE egnethed_kode = 1),
               count(*) FILTER (WHERE egnethed_kode = 2),
               count(*) FILTER (WHERE egnethed_kode = 3),
               count(*) FILTER (WHERE egnethed_kode = 9),
               count(pladser_verificeret), coalesce(sum(pladser_verificeret), 0),
               coalesce(sum(pladser) FILTER (WHERE pladser_verificeret IS NOT NULL), 0)
        FROM ly.t_6101_beskyt_rum WHERE {where}""", [folketal])
    names = ["pladser_pr_1000", "andel_vurderet", "antal", "pladser", "pladser_daekning",
             "antal_offentlige", "pladser_offentlige", "antal_vurderet", "egnet",
             "egnet_efter_udbedring", "uegnet", "ikke_vurderet", "antal_verificeret",
             "pladser_verificeret", "pladser_registreret_verificerede"]
    out = {n: (float(v) if n in DECIMALS else int(v)) for n, v in zip(names, row)}
    out["folketal"] = folketal
    return out


def expected_by_code(db: str, column: str, codelist: str, kommune: int) -> list[tuple]:
    """(kode, tekst, antal, pladser) for every active code (and any code in use)."""
    return [tuple(r) for r in query(db, f"""
        SELECT d.kode, d.tekst, count(t.objekt_id), coalesce(sum(t.pladser), 0)
        FROM ly.{codelist} d
        LEFT JOIN ly.t_6101_beskyt_rum t ON t.{column} = d.kode
                                         AND t.beliggenhedskommune = %s
        GROUP BY d.kode, d.tekst HAVING bool_or(d.aktiv = 1) OR count(t.objekt_id) > 0
        ORDER BY d.kode""", [kommune])]


# --- JSON: the figures themselves --------------------------------------------------------------

def test_municipality_figures_equal_the_database(ro_client, shared_db_url):
    r = ro_client.get(f"/rapporter/kommune/{KBH}?f=json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kommunekode"] == KBH and body["navn"] == "København"
    expected = expected_figures(shared_db_url, KBH)
    assert {k: body["figures"][k] for k in expected} == expected
    assert expected["antal"] > 0 and expected["antal_vurderet"] > 0
    for key, column, codelist in [
            ("efter_type", "beskyt_rum_kode", "d_6101_beskyt_rum"),
            ("efter_funktionsstatus", "funktionsstatus_kode", "d_basis_funktionsstatus"),
            ("efter_synlighed", "off_kode", "d_basis_offentlig"),
            ("efter_egnethed", "egnethed_kode", "d_ly_egnethed")]:
        got = [(c["kode"], c["tekst"], c["antal"], c["pladser"]) for c in body[key]]
        assert got == expected_by_code(shared_db_url, column, codelist, KBH), key
    verified = dict(query(shared_db_url, """
        SELECT egnethed_kode, coalesce(sum(pladser_verificeret), 0)
        FROM ly.t_6101_beskyt_rum WHERE beliggenhedskommune = %s GROUP BY 1""", [KBH]))
    for c in body["efter_egnethed"]:
        assert c["pladser_verificeret"] == verified.get(c["kode"], 0)
    needing = query(shared_db_url, """
        SELECT objekt_id::text FROM ly.t_6101_beskyt_rum
        WHERE beliggenhedskommune = %s AND egnethed_kode IN (2, 3)""", [KBH])
    assert body["handling_i_alt"] == len(needing)
    assert {a["objekt_id"] for a in body["handling"]} == {n for (n,) in needing}


def test_national_figures_equal_the_database(ro_client, shared_db_url):
    body = ro_client.get("/rapporter/national?f=json").json()
    expected = expected_figures(shared_db_url, None)
    assert {k: body["figures"][k] for k in expected} == expected
    rows = {r["kommunekode"]: r for r in body["kommuner"]}
    assert len(rows) == 99  # 98 municipalities and Christiansø
    per_kommune = dict(query(shared_db_url, """
        SELECT k.kommunekode, count(t.objekt_id)
        FROM ly.kommune k LEFT JOIN ly.t_6101_beskyt_rum t
          ON t.beliggenhedskommune = k.kommunekode GROUP BY 1"""))
    assert {k: r["figures"]["antal"] for k, r in rows.items()} == per_kommune
    assert sum(r["figures"]["pladser"] for r in rows.values()) == expected["pladser"]
    kbh = expected_figures(shared_db_url, KBH)
    assert rows[KBH]["figures"]["pladser_pr_1000"] == kbh["pladser_pr_1000"]
    assert rows[411]["figures"]["folketal"] is None  # Christiansø: no population figure
    assert rows[411]["figures"]["pladser_pr_1000"] is None


# --- HTML ------------------------------------------------------------------------------------

class ReportPage(HTMLParser):
    """Cells of rows marked data-figure / data-kode, tables by id, and images."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.figures: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self._table: str | None = None
        self._row: tuple[dict, list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables.setdefault(self._table, [])
        elif tag == "tr":
            self._row = (a, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row[1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            attrs, cells = self._row
            if "data-figure" in attrs:
                self.figures[attrs["data-figure"]] = cells[-1]
            elif self._table:
                self.tables[self._table].append(cells)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_municipality_report_html(ro_client, shared_db_url):
    r = ro_client.get(f"/rapporter/kommune/{KBH}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = ReportPage(r.text)
    expected = expected_figures(shared_db_url, KBH)
    for key, text in page.figures.items():
        assert text == dk(expected[key], DECIMALS.get(key, 0)), key
    assert {"antal", "pladser", "pladser_pr_1000", "antal_vurderet"} <= set(page.figures)
    classification = page.tables["klassifikation"]
    assert classification[0][:4] == ["Kode", "Egnethed", "Antal", "Pladser"]
    assert [row[1:4] for row in classification[1:]] == [
        [t, dk(n), dk(p)] for _, t, n, p in
        expected_by_code(shared_db_url, "egnethed_kode", "d_ly_egnethed", KBH)]
    maps = [i for i in page.images if i.get("src", "").startswith("data:image/png;base64,")]
    assert len(maps) == 1 and "København" in maps[0]["alt"]
    assert len(page.tables["handling"]) - 1 == expected["egnet_efter_udbedring"] + \
        expected["uegnet"]
    # The shelters' own sections follow their generic section, before the next theme's.
    text = r.text
    own = [text.index(f'<section id="{s}">') for s in ("registret", "daekning", "eftersyn")]
    assert text.index('<section id="tema-beskyttelsesrum"') < min(own)
    assert max(own) < text.index('<section id="tema-', text.index('id="tema-beskyttelsesrum"') + 1)


def test_national_report_html_has_a_row_per_municipality(ro_client):
    page = ReportPage(ro_client.get("/rapporter/national?f=html").text)
    rows = page.tables["kommunetabel"][1:]
    assert len(rows) == 99
    assert rows[0][:2] == ["101", "København"]
    assert any(i.get("src", "").startswith("data:image/png") for i in page.images)


# --- PDF -------------------------------------------------------------------------------------

def _lines(reader: PdfReader) -> list[str]:
    return [line.strip() for p in reader.pages for line in p.extract_text().splitlines()
            if line.strip()]


def _has_row(lines: list[str], cells: list[str]) -> bool:
    n = len(cells)
    return any(lines[i:i + n] == cells for i in range(len(lines) - n + 1))


def test_municipality_report_pdf(ro_client, shared_db_url, output_dir):
    r = ro_client.get(f"/rapporter/kommune/{KBH}?f=pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content[:5] == b"%PDF-"
    (output_dir / "rapport-kommune-101.pdf").write_bytes(r.content)
    reader = PdfReader(io.BytesIO(r.content))
    assert reader.metadata.title == "Kommunerapport: København (101)"
    # The map: a PNG drawn from PostGIS geometries on the first page.
    images = reader.pages[0].images
    assert len(images) == 1
    width, height = images[0].image.size
    assert width > 400 and height > 300
    lines = _lines(reader)
    assert "Kommunerapport: København (101)" in lines
    expected = expected_figures(shared_db_url, KBH)
    for label, key in [("Beskyttelsesrum i alt", "antal"), ("Registrerede pladser", "pladser"),
                       ("Folketal", "folketal"), ("Pladser pr. 1.000 indbyggere",
                                                  "pladser_pr_1000"),
                       ("Verificerede pladser", "pladser_verificeret"),
                       ("Andel vurderet (%)", "andel_vurderet")]:
        assert _has_row(lines, [label, dk(expected[key], DECIMALS.get(key, 0))]), label
    # The classification (inspection) table, row by row.
    assert "Klassifikation (egnethed)" in lines
    assert _has_row(lines, ["Kode", "Tekst", "Antal", "Pladser", "Verificerede pladser",
                            "Med verificerede pladser"])
    for kode, tekst, antal, pladser in expected_by_code(shared_db_url, "egnethed_kode",
                                                       "d_ly_egnethed", KBH):
        assert _has_row(lines, [str(kode), tekst, dk(antal), dk(pladser)]), tekst
    for kode, tekst, antal, pladser in expected_by_code(shared_db_url, "beskyt_rum_kode",
                                                       "d_6101_beskyt_rum", KBH):
        assert _has_row(lines, [str(kode), tekst, dk(antal), dk(pladser)]), tekst
    assert "Beskyttelsesrum, der kræver handling (egnet efter udbedring eller uegnet)" in lines
    assert "Eftersyn og mangler" in lines
    assert _has_row(lines, ["Grad", "Åbne mangler", "Heraf forfaldne"])


def test_the_inspection_table_shows_the_inspection_register(db_url, output_dir):
    """An approved inspection with deficiencies (one overdue) appears in the municipality's
    report as the database has it: inspections by status, open deficiencies by grade."""
    import json
    import uuid

    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.conftest import bearer, make_settings, query
    from tests.test_inspections import complete_answers, room

    cvr = query(db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = 101")[0][0]
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beskyt_rum_kode = 3 AND beliggenhedskommune = 101 AND "
                               "cvr_kode = %s LIMIT 1", [cvr])[0]
    admin = bearer(["municipal_admin"], subject="kbh-admin", cvr=cvr, kommuner=[KBH])
    eid = str(uuid.uuid4())
    body = {"objekt_id": str(shelter), "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
            "status": "indsendt", "svar": complete_answers(betondaeksel_kode=2),
            "rum": [room(konstruktion_blotlagt_armering_kode=1, konstruktion_revner_loft_kode=1)]}
    with TestClient(create_app(make_settings(db_url))) as c:
        assert c.put(f"/eftersyn/{eid}", content=json.dumps(body), headers={
            "Content-Type": "application/json", **admin}).status_code == 201
        assert c.post(f"/eftersyn/{eid}/godkend", headers=admin).status_code == 200
        query(db_url, "UPDATE ly.mangel SET frist = current_date - 1 WHERE grad = 'S'")
        data = c.get(f"/rapporter/kommune/{KBH}", params={"f": "json"}, headers=admin).json()
        pdf = c.get(f"/rapporter/kommune/{KBH}", params={"f": "pdf"}, headers=admin)
    expected = dict(query(db_url, "SELECT status, count(*) FROM ly.eftersyn "
                                  "WHERE beliggenhedskommune = 101 GROUP BY 1"))
    assert dict(data["eftersyn"]["efter_status"]) == {
        st: expected.get(st, 0) for st, _ in data["eftersyn"]["efter_status"]}
    assert expected == {"godkendt": 1}
    assert [tuple(m) for m in data["eftersyn"]["mangler"]] == [
        ("S", 1, 1), ("3", 0, 0), ("2", 1, 0), ("1", 1, 0)]
    lines = _lines(PdfReader(io.BytesIO(pdf.content)))
    assert _has_row(lines, ["godkendt", "1"])
    assert _has_row(lines, ["S – sikkerhed", "1", "1"])
    assert _has_row(lines, ["I alt", "3", "1"])


def test_national_report_pdf(ro_client, shared_db_url, output_dir):
    r = ro_client.get("/rapporter/national", headers={"Accept": "application/pdf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    (output_dir / "rapport-national.pdf").write_bytes(r.content)
    reader = PdfReader(io.BytesIO(r.content))
    lines = _lines(reader)
    assert sum(len(page.images) for page in reader.pages) == 1  # the map, once
    expected = expected_figures(shared_db_url, None)
    assert _has_row(lines, ["Beskyttelsesrum i alt", dk(expected["antal"])])
    kbh = expected_figures(shared_db_url, KBH)
    assert _has_row(lines, ["101", "København", dk(kbh["folketal"]), dk(kbh["antal"]),
                            dk(kbh["pladser"])])
    assert _has_row(lines, ["411", "Christiansø", "–"])


# --- access ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [f"/rapporter/kommune/{KBH}", f"/rapporter/kommune/{KBH}?f=pdf",
                                  "/rapporter/national?f=json", "/rapporter/kommune/998"])
def test_the_public_gets_401(anon_client, path):
    r = anon_client.get(path)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "sign in" in r.json()["detail"]


def test_a_municipal_editor_counts_what_it_may_see(ro_client, shared_db_url):
    """Access control applies: Copenhagen's editor sees only part of Frederiksberg."""
    (cvr,) = query(shared_db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                   [KBH])[0]
    headers = bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=cvr, kommuner=[KBH])
    mine = ro_client.get(f"/rapporter/kommune/{FRB}?f=json", headers=headers).json()
    everything = ro_client.get(f"/rapporter/kommune/{FRB}?f=json").json()
    visible = ro_client.get(ITEMS, params={"beliggenhedskommune": FRB, "limit": 10000},
                            headers=headers).json()
    assert mine["figures"]["antal"] == visible["numberMatched"] == len(visible["features"])
    assert mine["figures"]["pladser"] == sum(f["properties"]["pladser"]
                                             for f in visible["features"])
    assert 0 < mine["figures"]["antal"] < everything["figures"]["antal"]


@pytest.mark.parametrize("path, status, field", [
    ("/rapporter/kommune/abc", 400, "kommunekode"),
    ("/rapporter/kommune/12", 400, "kommunekode"),
    ("/rapporter/kommune/998", 404, None),
    (f"/rapporter/kommune/{KBH}?f=xml", 400, "f"),
    (f"/rapporter/kommune/{KBH}?aar=2026", 400, "aar"),
    ("/rapporter/national?f=docx", 400, "f"),
])
def test_bad_requests_are_problems(ro_client, path, status, field):
    r = ro_client.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field:
        assert r.json()["errors"][0]["field"] == field


def test_report_pages_are_linked_from_the_map(ro_client):
    page = ro_client.get(f"/kort?kommune={KBH}").text
    assert re.search(rf'href="[^"]*/rapporter/kommune/{KBH}"', page)
