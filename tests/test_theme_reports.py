"""Reports are generic over the themes: the municipal and national reports have one section per
registered theme, whose figures equal independent SQL on the themes' base tables.

One module database (a copy of the demo template) gets objects of every theme in one
municipality, built from each theme's descriptor alone: every visibility (off_kode 1, 2, 3),
for validity themes periods in the past, now, open-ended and upcoming, an ended object and an
edited one (so history exists that must not be counted), and one object in another
municipality. The expected figures are computed here from the base tables (`systid_til IS
NULL`), with the audience's visibility written out independently of Ly's row-level security.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from pypdf import PdfReader

from datamodel import themes
from datamodel.access import Actor, transaction_settings
from loaders import reports as figures
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, bearer, fresh_database, make_settings, query
from tests.test_reports import ReportPage, _has_row, _lines, dk

KOMMUNE, OTHER = 751, 101  # Aarhus: the objects; København: one more each, and the editor
THEMES = themes.all_themes()
TODAY_SQL = "(now() AT TIME ZONE 'Europe/Copenhagen')::date"

#: (off_kode, validity from, validity to, ended, edited) by days from today.
PLAN = [
    (1, -10, 10, False, False),
    (3, -2, None, False, False),
    (2, 5, 8, False, False),
    (1, -20, -5, False, False),
    (1, 3, None, False, False),
    (3, -1, 1, True, False),
    (1, -1, 30, False, True),
]


def _value(conn, f, i: int, today: date):
    """A value for a required attribute, from its descriptor alone."""
    if f.default is not None:
        return f.default
    if f.codelist:
        return conn.execute(sql.SQL("SELECT min(kode) FROM ly.{} WHERE aktiv = 1").format(
            sql.Identifier(f.codelist))).fetchone()[0]
    if f.type == "integer":
        low = int(f.minimum) if f.minimum is not None else 1
        high = int(f.maximum) if f.maximum is not None else low + 1000
        return min(high, low + 7 * i + 3)
    if f.type == "number":
        return float(f.minimum or 1) + i
    if f.type == "date":
        return today
    if f.type == "string":
        return f"Test {f.name} {i}"[:f.max_length or 60]
    raise AssertionError(f"no test value for {f.name} ({f.type})")


def _insert(conn, theme, i: int, kommune: int, off_kode: int, start, end, today: date):
    values: dict = {}
    for f in theme.writable_fields:
        if f.required or f.personal or f.name == theme.label:
            values[f.name] = _value(conn, f, i, today)
    for n, fig in enumerate(theme.figures):
        f = theme.fields_by_name[fig.field]
        low = int(f.minimum) if f.minimum is not None else 1
        values[fig.field] = max(low, 1) + 11 * i + 5 * n
    values["off_kode"] = off_kode
    if theme.validity:
        v_from, v_to = theme.validity
        values[v_from] = today + timedelta(days=start)
        values[v_to] = None if end is None else today + timedelta(days=end)
    names = list(values)
    # A point well inside the municipality (and for an area theme, a small square around
    # it), a little apart for each object.
    position = sql.SQL(
        "ST_Translate(ST_PointOnSurface(ST_Buffer(k.geometri, -1500)), %s, %s)")
    geometry = sql.SQL("ST_Multi(ST_Buffer({}, 40, 1))").format(position) if theme.is_area \
        else position
    stmt = sql.SQL("INSERT INTO {view} ({cols}, geometri) SELECT {vals}, {geom} "
                   "FROM ly.kommune k WHERE k.kommunekode = %s RETURNING objekt_id").format(
        view=sql.Identifier("ly", theme.current_view),
        cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(names)), geom=geometry)
    return conn.execute(stmt, [*values.values(), 30.0 * i, 20.0 * i, kommune]).fetchone()[0]


@pytest.fixture(scope="module")
def db(template_db):
    """The demo register with objects of every theme in KOMMUNE (and one in OTHER)."""
    for url in fresh_database(template_db, "ly_tr_"):
        with psycopg.connect(url) as conn:
            # As the national administrator: the current views show it the personal data,
            # so an edit through them keeps it.
            conn.execute("SELECT set_config('ly.roller', 'national_admin', false)")
            today = conn.execute(f"SELECT {TODAY_SQL}").fetchone()[0]
            for theme in THEMES:
                view = sql.Identifier("ly", theme.current_view)
                for i, (off, start, end, ended, edited) in enumerate(PLAN):
                    oid = _insert(conn, theme, i, KOMMUNE, off, start, end, today)
                    if ended:
                        conn.execute(sql.SQL("DELETE FROM {} WHERE objekt_id = %s").format(view),
                                     [oid])
                    if edited:
                        fig = theme.figures[0].field
                        conn.execute(sql.SQL("UPDATE {v} SET {f} = {f} + 1 WHERE objekt_id = %s")
                                     .format(v=view, f=sql.Identifier(fig)), [oid])
                _insert(conn, theme, 20, OTHER, 1, -1, 1, today)
        yield url


@pytest.fixture(scope="module")
def app_client(db):
    with TestClient(create_app(make_settings(db)), headers=ADMIN_HEADERS) as c:
        yield c


def test_the_fixture_put_every_theme_in_the_municipality(db):
    """The objects lie where the test counts them, with history that must not count."""
    for theme in THEMES:
        current, versions = query(db, sql.SQL(
            "SELECT count(*) FILTER (WHERE systid_til IS NULL), count(*) FROM {t} "
            "WHERE {label} LIKE 'Test %%' AND beliggenhedskommune = %s").format(
            t=sql.Identifier("ly", theme.table), label=sql.Identifier(theme.label)),
            [KOMMUNE])[0]
        assert (current, versions) == (len(PLAN) - 1, len(PLAN) + 1), theme


# --- the expected figures, from the base tables --------------------------------------------

#: Who sees a current version, written out per audience (GeoFA's off_kode semantics).
VISIBLE = {
    "admin": ("TRUE", []),
    "public": ("off_kode = 1", []),
}


def _editor(db) -> tuple[dict, tuple[str, list]]:
    """A municipal editor of OTHER: sees off_kode 1 and 3 everywhere, and its own."""
    (cvr,) = query(db, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [OTHER])[0]
    headers = bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=cvr, kommuner=[OTHER])
    return headers, ("(off_kode IN (1, 3) OR cvr_kode = %s OR "
                     "(beliggenhedskommune = %s AND off_kode <> 2))", [cvr, OTHER])


def expected_section(db, theme, kommune: int | None, visible: tuple[str, list]) -> dict:
    where, params = visible
    area = "TRUE" if kommune is None else "beliggenhedskommune = %s"
    area_params = [] if kommune is None else [kommune]
    base = sql.SQL("FROM {t} WHERE systid_til IS NULL AND {area} AND ({vis})").format(
        t=sql.Identifier("ly", theme.table), area=sql.SQL(area), vis=sql.SQL(where))
    figs = [f.field for f in theme.figures]
    sums = sql.SQL(", ").join(sql.SQL("coalesce(sum({}), 0)").format(sql.Identifier(f))
                              for f in figs)
    row = query(db, sql.SQL("SELECT count(*), {sums} {base}").format(sums=sums, base=base),
                [*area_params, *params])[0]
    out = {"antal": row[0], "summer": dict(zip(figs, row[1:]))}
    if theme.validity:
        v_from, v_to = map(sql.Identifier, theme.validity)
        valid = sql.SQL(f"({{f}} IS NULL OR {{f}} <= {TODAY_SQL}) AND "
                        f"({{t}} IS NULL OR {{t}} >= {TODAY_SQL})").format(f=v_from, t=v_to)
        row = query(db, sql.SQL("SELECT count(*), {sums} {base} AND {valid}").format(
            sums=sums, base=base, valid=valid), [*area_params, *params])[0]
        out["gyldige_i_dag"] = row[0]
        out["summer_i_dag"] = dict(zip(figs, row[1:]))
        rows = query(db, sql.SQL(
            "SELECT objekt_id::text, {valid}, {figs} {base} AND "
            f"({{t}} IS NULL OR {{t}} >= {TODAY_SQL})").format(
            valid=valid, figs=sql.SQL(", ").join(map(sql.Identifier, figs)), base=base,
            t=v_to), [*area_params, *params])
        out["aktuelle"] = {r[0]: (r[1], dict(zip(figs, r[2:]))) for r in rows}
    return out


def check_section(section: dict, theme, expected: dict) -> None:
    assert section["collection_id"] == theme.collection_id
    assert section["titel"] == theme.title
    assert section["antal"] == expected["antal"]
    assert {s["felt"]: s["sum"] for s in section["summer"]} == expected["summer"]
    assert [s["titel"] for s in section["summer"]] == [f.title for f in theme.figures]
    if not theme.validity:
        assert section["gyldighed"] is None and section["aktuelle"] == []
        return
    assert section["gyldighed"] == list(theme.validity)
    assert section["gyldige_i_dag"] == expected["gyldige_i_dag"]
    assert {s["felt"]: s["sum"] for s in section["summer_i_dag"]} == expected["summer_i_dag"]
    listed = {o["objekt_id"]: (o["gyldig_nu"], {f.field: o["egenskaber"][f.field]
                                                for f in theme.figures})
              for o in section["aktuelle"]}
    assert section["aktuelle_i_alt"] == len(expected["aktuelle"])
    if len(expected["aktuelle"]) <= figures.LISTED_LIMIT:
        assert listed == expected["aktuelle"]
    else:
        assert len(listed) == figures.LISTED_LIMIT
        assert all(expected["aktuelle"][k] == v for k, v in listed.items())
    starts = [o["egenskaber"][theme.validity[0]] for o in section["aktuelle"]]
    assert starts == sorted(starts)  # earliest first
    personal = {f.name for f in theme.personal_fields}
    assert not personal & set(section["felter"])
    assert all(set(o["egenskaber"]) == set(section["felter"]) for o in section["aktuelle"])


# --- JSON -----------------------------------------------------------------------------------

def test_municipal_report_has_every_theme_with_figures_equal_to_the_tables(app_client, db):
    body = app_client.get(f"/rapporter/kommune/{KOMMUNE}?f=json").json()
    sections = {s["collection_id"]: s for s in body["temaer"]}
    assert list(sections) == [t.collection_id for t in THEMES]
    for theme in THEMES:
        expected = expected_section(db, theme, KOMMUNE, VISIBLE["admin"])
        assert expected["antal"] >= len(PLAN) - 1  # the fixture's objects are counted
        if theme.validity:
            # past, now, open-ended, upcoming: not all are valid today, not all listed
            assert 0 < expected["gyldige_i_dag"] < expected["antal"]
            assert expected["gyldige_i_dag"] < len(expected["aktuelle"]) < expected["antal"]
        check_section(sections[theme.collection_id], theme, expected)
    # The shelters' own figures (their workflow's) agree with their generic section.
    assert sections["beskyttelsesrum"]["antal"] == body["figures"]["antal"]


def test_national_report_has_every_theme_with_national_figures(app_client, db):
    body = app_client.get("/rapporter/national?f=json").json()
    sections = {s["collection_id"]: s for s in body["temaer"]}
    assert list(sections) == [t.collection_id for t in THEMES]
    for theme in THEMES:
        expected = expected_section(db, theme, None, VISIBLE["admin"])
        local = expected_section(db, theme, KOMMUNE, VISIBLE["admin"])
        assert expected["antal"] > local["antal"]  # the object in OTHER is counted too
        check_section(sections[theme.collection_id], theme, expected)


def test_a_municipal_editor_counts_what_it_may_see(app_client, db):
    headers, visible = _editor(db)
    body = app_client.get(f"/rapporter/kommune/{KOMMUNE}?f=json", headers=headers).json()
    everything = app_client.get(f"/rapporter/kommune/{KOMMUNE}?f=json").json()
    for theme, section, full in zip(THEMES, body["temaer"], everything["temaer"]):
        expected = expected_section(db, theme, KOMMUNE, visible)
        check_section(section, theme, expected)
        assert section["antal"] < full["antal"]  # the off_kode 2 object is not counted


def _public_sections(db, kommune: int | None) -> list[figures.ThemeSection]:
    """The sections as the public would get them (the public's views and role)."""
    settings = transaction_settings(Actor(subject="offentlig", authenticated=False))
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT ly.activation_in_force()").fetchone()[0] is False
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, true)", [name, value])
        conn.execute("SELECT set_config('ly.aktiveret', 'false', true)")
        now = conn.execute("SELECT now()").fetchone()[0]
        return figures.run(conn, figures.theme_sections_steps(True, kommune, now))


def test_the_public_counts_only_public_objects(db):
    for theme, section in zip(THEMES, _public_sections(db, KOMMUNE)):
        expected = expected_section(db, theme, KOMMUNE, VISIBLE["public"])
        full = expected_section(db, theme, KOMMUNE, VISIBLE["admin"])
        assert expected["antal"] < full["antal"]
        check_section(figures.as_json(section), theme, expected)


# --- HTML and PDF ---------------------------------------------------------------------------

def _theme_sections_html(text: str) -> dict[str, str]:
    """collection id -> the HTML of its report section."""
    out = {}
    for theme in THEMES:
        marker = f'<section id="tema-{theme.collection_id}"'
        assert text.count(marker) == 1, theme
        start = text.index(marker)
        out[theme.collection_id] = text[start:text.index("</section>", start)]
    return out


@pytest.mark.parametrize("path", [f"/rapporter/kommune/{KOMMUNE}", "/rapporter/national"])
def test_html_has_a_section_per_theme_with_its_figures(app_client, db, path, output_dir):
    r = app_client.get(path + "?f=html")
    assert r.status_code == 200, r.text
    kommune = KOMMUNE if "kommune" in path else None
    (output_dir / f"rapport-temaer-{'kommune' if kommune else 'national'}.html").write_text(
        r.text, encoding="utf-8")
    for theme in THEMES:
        html = _theme_sections_html(r.text)[theme.collection_id]
        assert f"<h2>{theme.title}</h2>" in html
        page = ReportPage(html)
        cells = {row[0]: row[1] for row in page.tables[f"tema-{theme.collection_id}-tal"]}
        expected = expected_section(db, theme, kommune, VISIBLE["admin"])
        assert cells["Antal i alt"] == dk(expected["antal"])
        for f in theme.figures:
            assert cells[f.title] == dk(expected["summer"][f.field])
        if theme.validity:
            assert cells["Gyldige i dag"] == dk(expected["gyldige_i_dag"])
            listed = page.tables[f"tema-{theme.collection_id}-aktuelle"]
            assert len(listed) - 1 == min(len(expected["aktuelle"]), figures.LISTED_LIMIT)


@pytest.mark.parametrize("path", [f"/rapporter/kommune/{KOMMUNE}", "/rapporter/national"])
def test_pdf_has_a_section_per_theme_with_its_figures(app_client, db, path, output_dir):
    r = app_client.get(path + "?f=pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    name = "kommune" if "kommune" in path else "national"
    (output_dir / f"rapport-temaer-{name}.pdf").write_bytes(r.content)
    lines = _lines(PdfReader(io.BytesIO(r.content)))
    kommune = KOMMUNE if "kommune" in path else None
    for theme in THEMES:
        expected = expected_section(db, theme, kommune, VISIBLE["admin"])
        rows = ["Antal i alt", dk(expected["antal"])]
        for f in theme.figures:
            rows += [f.title, dk(expected["summer"][f.field])]
        # The section's title, then its figures table.
        assert _has_row(lines, [theme.title, *rows]), theme
        if theme.validity:
            assert _has_row(lines, ["Gyldige i dag", dk(expected["gyldige_i_dag"])]), theme


# --- a theme's own figures (its workflow's) -------------------------------------------------

def test_a_theme_has_its_own_figures_exactly_when_it_has_its_own_report_modules():
    """The reports find a theme's own figures and their presentation by convention
    (`loaders.reports_<collection id>`, `service.reports_<collection id>`), keyed by temakode."""
    from service import reports as service_reports

    root = Path(__file__).resolve().parent.parent
    for theme in THEMES:
        own = (root / "loaders" / f"reports_{theme.collection_id}.py").exists()
        assert (figures.extra_for(theme) is not None) == own, theme
        for scope in (service_reports.KOMMUNE, service_reports.NATIONAL):
            shown = (root / "service" / f"reports_{theme.collection_id}.py").exists()
            assert (service_reports.part_for(theme, scope) is not None) == shown, theme
    assert figures.extra_for(themes.get("beskyttelsesrum")) is not None


def test_figures_per_municipality_need_a_theme_with_them():
    """The maps' choropleth asks the default theme's own figures; a theme without is refused
    before any statement is run."""
    without = next(t for t in THEMES if figures.extra_for(t) is None)
    with pytest.raises(LookupError, match=without.collection_id):
        figures.run(None, figures.kommune_rows_steps(False, theme=without))


def test_own_figures_may_not_shadow_the_reports_fields():
    @dataclass
    class Clash:
        temaer: int

    report = figures.NationalReport(genereret=datetime(2026, 1, 1, tzinfo=timezone.utc),
                                    befolkning_periode="2026K1", befolkning_kilde="DST",
                                    temaer=[], extras={"x": Clash(1)})
    with pytest.raises(ValueError, match="temaer"):
        figures.as_json(report)


@dataclass
class _Own:
    test_antal: int
    test_kommune: int | None


def _own_steps(theme, kommunekode, now):
    """A test theme's own figure: its current objects in the area, counted here."""
    view = sql.Identifier("ly", theme.current_view)
    if kommunekode is None:
        rows = yield sql.SQL("SELECT count(*) FROM {}").format(view), []
    else:
        rows = yield sql.SQL("SELECT count(*) FROM {} WHERE beliggenhedskommune = %s").format(
            view), [kommunekode]
    return _Own(rows[0][0], kommunekode)


@pytest.fixture
def own_theme():
    """A theme without its own figures, given some for the test (and taken back after)."""
    from service import reports as service_reports
    from service.http import templates

    theme = next(t for t in THEMES if figures.extra_for(t) is None)

    class Part(service_reports.ReportPart):
        template = templates.env.from_string(
            '<section id="egen-{{ part.theme.collection_id }}">'
            '<p data-egen="{{ part.own.test_antal }}">Eget tal: {{ part.drawn }}</p></section>')

        async def load(self, conn, theme, report, own):
            return (await (await conn.execute("SELECT 2")).fetchone())[0]

        def draw(self, theme, report, own, loaded):
            return loaded * own.test_antal

        def html(self, theme, report, own, drawn):
            return {"theme": theme, "own": own, "drawn": drawn}

        def pdf(self, theme, report, own, drawn, p, styles):
            return [p(f"Eget tal: {drawn}")], [p("Eget bilag")]

    figures.register_extra(theme.temakode, figures.ReportExtra(
        kommune_steps=_own_steps, national_steps=lambda t, now: _own_steps(t, None, now)))
    service_reports.register_part(theme.temakode, kommune=Part(), national=Part())
    try:
        yield theme
    finally:
        figures.unregister_extra(theme.temakode)
        service_reports.unregister_part(theme.temakode)
    assert figures.extra_for(theme) is None


@pytest.mark.parametrize("path", [f"/rapporter/kommune/{KOMMUNE}", "/rapporter/national"])
def test_a_themes_own_figures_follow_its_section(app_client, db, own_theme, path):
    """The generic reports run a registered theme's own steps and show its part right after
    its section (HTML, PDF), its figures beside the report's own in JSON."""
    kommune = KOMMUNE if "kommune" in path else None
    expected = expected_section(db, own_theme, kommune, VISIBLE["admin"])["antal"]
    body = app_client.get(path + "?f=json").json()
    assert (body["test_antal"], body["test_kommune"]) == (expected, kommune)
    assert "figures" in body  # the shelters' own figures are still there

    text = app_client.get(path + "?f=html").text
    ids = [t.collection_id for t in THEMES]
    start = text.index(f'<section id="tema-{own_theme.collection_id}"')
    following = ids.index(own_theme.collection_id) + 1
    end = text.index(f'<section id="tema-{ids[following]}"') if following < len(ids) \
        else len(text)
    own = text.index(f'<section id="egen-{own_theme.collection_id}">')
    assert start < own < end and text.count('id="egen-') == 1
    assert f'<p data-egen="{expected}">Eget tal: {2 * expected}</p>' in text

    lines = _lines(PdfReader(io.BytesIO(app_client.get(path + "?f=pdf").content)))
    # A section's title is followed by its figures (the overview names the themes too).
    heading = {t.collection_id: next(i for i in range(len(lines) - 1) if lines[i] == t.title
                                     and lines[i + 1] == "Antal i alt") for t in THEMES}
    titles = list(heading.values())
    mine = heading[own_theme.collection_id]
    later = [i for i in titles if i > mine]
    assert mine < lines.index(f"Eget tal: {2 * expected}") < (min(later) if later else len(lines))
    assert lines.index("Eget bilag") > max(titles)
