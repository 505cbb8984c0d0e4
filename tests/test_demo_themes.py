"""The demo data of every theme: there, deterministic, plausible, and said to be synthetic.

Evacuation centres and temporary overnight stays lie in a postal district near its centre,
in their municipality; every municipality has an evacuation centre; event areas are valid
MultiPolygons of 0.5-50 ha near towns, wholly inside one municipality, mostly in the summer
of 2026; validity periods are ordered; required attributes are filled and within their
ranges and code lists. The shelters' own demo is covered by tests/test_demo_and_layout.py.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from datamodel import themes
from loaders.demo import SYNTHETIC_MARK, SYNTHETIC_NOTE, generator, load_demo, load_themes
from tests.conftest import (AREA_THEME_IDS, DEMO_COUNT, DEMO_REFERENCE_DATE, DEMO_USER,
                            THEME_IDS, VALIDITY_THEME_IDS, demo_counts, query)

OTHER_THEME_IDS = [cid for cid in THEME_IDS if cid != themes.default().collection_id]
CENTRES, STAYS, EVENTS = "evakueringscenter", "midlertidig_overnatning", \
    "stoerre_udendoers_arrangementer"


def _current(cid: str) -> str:
    """The theme's current demo versions in its base table (the views mask personal data
    from a connection that is no actor)."""
    t = themes.get(cid)
    return f"(SELECT * FROM ly.{t.table} WHERE systid_til IS NULL AND bruger_id = '{DEMO_USER}')"


def _rows(url: str, cid: str) -> list[tuple]:
    """Every attribute a client writes, the derived ones, and the geometry, by objekt_id."""
    t = themes.get(cid)
    cols = ["objekt_id", *(f.name for f in t.writable_fields), "beliggenhedskommune",
            "bruger_id", "ST_AsEWKT(geometri)"]
    return query(url, f"SELECT {', '.join(cols)} FROM {_current(cid)} d ORDER BY objekt_id")


def test_every_theme_names_a_generator():
    for cid in THEME_IDS:
        assert callable(generator(themes.get(cid))), cid


@pytest.mark.parametrize("cid", THEME_IDS)
def test_every_theme_has_demo_objects_written_through_its_view(shared_db_url, cid):
    t = themes.get(cid)
    (n,) = query(shared_db_url, f"SELECT count(*) FROM ly.{t.current_view} "
                                "WHERE bruger_id = %s", [DEMO_USER])[0]
    assert n > 0
    # written through the versioned view: one version each, with system times and an audit row
    versions, objects, untimed = query(shared_db_url, f"""
        SELECT count(*), count(DISTINCT objekt_id), count(*) FILTER (WHERE systid_fra IS NULL)
        FROM ly.{t.table} WHERE bruger_id = %s""", [DEMO_USER])[0]
    assert versions == objects == n and untimed == 0


def test_counts_scale_with_municipalities_and_postal_districts(shared_db_url):
    counts = demo_counts(shared_db_url)
    (municipalities,) = query(shared_db_url, "SELECT count(*) FROM ly.kommune")[0]
    (districts,) = query(shared_db_url, "SELECT count(*) FROM ly.postnummer")[0]
    assert counts[themes.default().collection_id] == DEMO_COUNT
    assert districts / 2 <= counts[CENTRES] <= districts  # one per 1-2 postal districts
    assert 0.7 * municipalities <= counts[STAYS] <= 1.5 * municipalities
    assert 150 <= counts[EVENTS] <= 300


def test_the_demo_is_deterministic_and_reloads_like_the_shelters(empty_db_url, shared_db_url):
    # The session template was loaded by load_demo; a second load into another database
    # gives the same objects, down to ids, attributes and geometries.
    with psycopg.connect(empty_db_url) as conn:
        written = load_themes(conn, themes=OTHER_THEME_IDS)
    assert written == {cid: n for cid, n in demo_counts(shared_db_url).items()
                       if cid in OTHER_THEME_IDS}
    for cid in OTHER_THEME_IDS:
        assert _rows(empty_db_url, cid) == _rows(shared_db_url, cid), cid
    # Loaded already: nothing written; replace ends the old versions and writes the same set.
    with psycopg.connect(empty_db_url) as conn:
        assert load_themes(conn, themes=OTHER_THEME_IDS) == {cid: 0 for cid in OTHER_THEME_IDS}
        again = load_themes(conn, themes=OTHER_THEME_IDS, replace=True)
    assert again == written
    for cid in OTHER_THEME_IDS:
        assert _rows(empty_db_url, cid) == _rows(shared_db_url, cid), cid
        (versions,) = query(empty_db_url, f"SELECT count(*) FROM ly.{themes.get(cid).table}")[0]
        assert versions == 2 * written[cid]


def test_load_demo_can_be_restricted_to_themes(empty_db_url):
    with psycopg.connect(empty_db_url) as conn:
        assert load_demo(conn, themes=[STAYS]) == 0  # no shelters asked for
    counts = demo_counts(empty_db_url)
    assert counts[STAYS] > 0
    assert all(n == 0 for cid, n in counts.items() if cid != STAYS)
    with pytest.raises(KeyError):
        with psycopg.connect(empty_db_url) as conn:
            load_themes(conn, themes=["no_such_theme"])


@pytest.mark.parametrize("cid, within", [(CENTRES, 1000), (STAYS, 1600)])
def test_points_lie_in_their_postal_district_near_its_centre(shared_db_url, cid, within):
    rows = query(shared_db_url, f"""
        WITH centre AS (SELECT postnr, ST_PointOnSurface(geometri) AS pt FROM ly.postnummer),
        with_centre AS (SELECT DISTINCT k.kommunekode FROM ly.kommune k
                        JOIN centre c ON ST_Intersects(k.geometri, c.pt))
        SELECT count(*),
               count(*) FILTER (WHERE NOT ST_Within(d.geometri, p.geometri)),
               count(*) FILTER (WHERE NOT ST_Within(d.geometri, k.geometri)),
               count(*) FILTER (WHERE d.postnr_by IS DISTINCT FROM p.navn),
               count(*) FILTER (WHERE d.beliggenhedskommune IN (SELECT * FROM with_centre)
                                AND NOT ST_DWithin(d.geometri, c.pt, %s))
        FROM {_current(cid)} d
        JOIN ly.postnummer p ON p.postnr = d.postnr
        JOIN centre c ON c.postnr = d.postnr
        JOIN ly.kommune k ON k.kommunekode = d.beliggenhedskommune""", [within])[0]
    total, outside_district, outside_municipality, misnamed, far = rows
    assert total == demo_counts(shared_db_url)[cid]  # every one has its postal district
    assert outside_district == outside_municipality == misnamed == far == 0


def test_every_municipality_has_an_evacuation_centre(shared_db_url):
    missing = query(shared_db_url, f"""
        SELECT kommunekode FROM ly.kommune k WHERE NOT EXISTS (
            SELECT 1 FROM {_current(CENTRES)} d WHERE d.beliggenhedskommune = k.kommunekode)""")
    assert missing == []
    low, high = query(shared_db_url, f"SELECT min(sovepladser), max(sovepladser) "
                                     f"FROM {_current(CENTRES)} d")[0]
    assert 1 <= low and high <= 5000


@pytest.mark.parametrize("cid", AREA_THEME_IDS)
def test_event_areas_are_valid_plausible_and_inside_one_municipality(shared_db_url, cid):
    rows = query(shared_db_url, f"""
        SELECT count(*),
               count(*) FILTER (WHERE GeometryType(d.geometri) <> 'MULTIPOLYGON'
                                OR ST_IsEmpty(d.geometri) OR NOT ST_IsValid(d.geometri)),
               min(ST_Area(d.geometri)), max(ST_Area(d.geometri)),
               count(*) FILTER (WHERE NOT ST_Within(d.geometri, k.geometri)),
               count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM ly.postnummer p
                   WHERE ST_DWithin(d.geometri, ST_PointOnSurface(p.geometri), 5000))),
               count(*) FILTER (WHERE ST_NPoints(d.geometri) > 30)
        FROM {_current(cid)} d JOIN ly.kommune k ON k.kommunekode = d.beliggenhedskommune""")[0]
    total, invalid, smallest, largest, outside, far_from_towns, complicated = rows
    assert total > 0 and invalid == 0
    assert 5_000 <= smallest and largest <= 500_000  # 0.5-50 ha
    assert outside == 0 and far_from_towns == 0 and complicated == 0


def test_events_are_mostly_in_the_summer_of_2026(shared_db_url):
    total, summer, kinds, people = query(shared_db_url, f"""
        SELECT count(*),
               count(*) FILTER (WHERE gyldig_fra >= '2026-06-01' AND gyldig_til <= '2026-08-31'),
               count(DISTINCT sua_kode), max(antal_personer)
        FROM {_current(EVENTS)} d""")[0]
    assert summer >= 0.75 * total and summer < total  # a few in other seasons
    assert kinds >= 8 and people <= 999999


@pytest.mark.parametrize("cid", VALIDITY_THEME_IDS)
def test_validity_periods_are_ordered(shared_db_url, cid):
    start, end = themes.get(cid).validity
    (bad,) = query(shared_db_url, f"SELECT count(*) FROM {_current(cid)} d "
                                  f"WHERE {start} IS NULL OR {end} < {start}")[0]
    assert bad == 0


def test_overnight_stays_are_past_current_and_future(shared_db_url):
    ref = DEMO_REFERENCE_DATE
    past, current, future, open_ended = query(shared_db_url, f"""
        SELECT count(*) FILTER (WHERE gyldig_til < %(ref)s),
               count(*) FILTER (WHERE gyldig_fra <= %(ref)s
                                AND (gyldig_til IS NULL OR gyldig_til >= %(ref)s)),
               count(*) FILTER (WHERE gyldig_fra > %(ref)s),
               count(*) FILTER (WHERE gyldig_til IS NULL)
        FROM {_current(STAYS)} d""", {"ref": ref})[0]
    assert past and current and future and open_ended
    (outside_2025_2026,) = query(shared_db_url, f"""
        SELECT count(*) FROM {_current(STAYS)} d
        WHERE gyldig_fra < '2025-01-01' OR gyldig_til > '2026-12-31'""")[0]
    assert outside_2025_2026 == 0
    assert ref == date(2026, 6, 15)  # fixed, not today's date


@pytest.mark.parametrize("cid", OTHER_THEME_IDS)
def test_required_attributes_are_filled_within_ranges_and_code_lists(shared_db_url, cid):
    t = themes.get(cid)
    for f in t.writable_fields:
        terms = []
        if f.required:
            terms.append(f"{f.name} IS NULL")
        if f.minimum is not None:
            terms.append(f"{f.name} < {f.minimum}")
        if f.maximum is not None:
            terms.append(f"{f.name} > {f.maximum}")
        if f.max_length:
            terms.append(f"length({f.name}) > {f.max_length}")
        if f.codelist:
            terms.append(f"{f.name} NOT IN (SELECT kode FROM ly.{f.codelist})")
        if terms:
            (bad,) = query(shared_db_url, f"SELECT count(*) FROM {_current(cid)} d "
                                          f"WHERE {' OR '.join(terms)}")[0]
            assert bad == 0, (cid, f.name)
    # the responsible authority comes from the municipality, as for any object
    (wrong_cvr,) = query(shared_db_url, f"""
        SELECT count(*) FROM {_current(cid)} d JOIN ly.kommune k
        ON k.kommunekode = d.beliggenhedskommune WHERE d.cvr_kode IS DISTINCT FROM k.cvr_kode
        """)[0]
    assert wrong_cvr == 0


@pytest.mark.parametrize("cid", OTHER_THEME_IDS)
def test_the_texts_say_synthetic_and_contacts_are_fake(shared_db_url, cid):
    t = themes.get(cid)
    total, unmarked, unnoted = query(shared_db_url, f"""
        SELECT count(*), count(*) FILTER (WHERE {t.label} NOT LIKE %s),
               count(*) FILTER (WHERE note IS DISTINCT FROM %s)
        FROM {_current(cid)} d""", [f"%{SYNTHETIC_MARK}", SYNTHETIC_NOTE])[0]
    assert total > 0 and unmarked == 0 and unnoted == 0
    assert SYNTHETIC_NOTE.startswith("Syntetisk demodata")
    for f in t.personal_fields:
        if f.type == "integer":  # phone numbers: 8 digits starting 9999
            cond, param = f"{f.name}::text !~ %s", "^9999[0-9]{4}$"
        else:
            cond, param = f"{f.name} NOT LIKE %s", f"%{SYNTHETIC_MARK}"
        (bad,) = query(shared_db_url, f"SELECT count(*) FROM {_current(cid)} d "
                                      f"WHERE {f.name} IS NULL OR {cond}", [param])[0]
        assert bad == 0, (cid, f.name)
    # visibility: mostly every authority (3), some the public (1), a few the responsible one (2)
    shares = dict(query(shared_db_url, f"SELECT off_kode, count(*) FROM {_current(cid)} d "
                                       "GROUP BY 1"))
    assert set(shares) == {1, 2, 3}
    assert shares[3] > shares[1] > shares[2]
