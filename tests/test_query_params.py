"""The items' query parameters peers offer: sortby, properties, skipGeometry and q; keyset
paging in both directions (next and prev cursors); the Link header.

One database for the module: the demo register, with some shelters in Odense (kommune 461)
renamed to Danish and accented names, a few names removed, a unique street name and note,
and one public event with a place description only authorities may read.
"""

from __future__ import annotations

import base64
import json
import re
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from datamodel import query as itemsquery
from datamodel import themes
from service.app import create_app
from tests.conftest import (ADMIN_HEADERS, bearer, fresh_database, items_path, make_settings,
                            query)

SHELTERS = themes.get("beskyttelsesrum")
EVENTS = themes.get("stoerre_udendoers_arrangementer")
STAYS = themes.get("midlertidig_overnatning")
ITEMS = items_path(SHELTERS.collection_id)
ODENSE = 461
COLLATION = itemsquery.SORT_COLLATION
#: Names given to the first Odense shelters (by objekt_id): æ, ø, å after z in Danish; two
#: shelters without a name.
NAMES = [None, None, "Æblehaven", "Øster Allé", "Åløkken", "Zebrastien", "aalborgvej",
         "Émile Café", "Bøgen", "bøgen"]
STREET = "Kærlighedsstien"
NOTE = "Zyxwvu"
PLACE = "Hemmelig Bagindgang"


@pytest.fixture(scope="module")
def db(template_db):
    for url in fresh_database(template_db):
        _seed(url)
        yield url


def _odense(url: str) -> list[str]:
    return [str(r[0]) for r in query(
        url, f"SELECT objekt_id FROM ly.{SHELTERS.current_view} WHERE beliggenhedskommune = %s "
             "ORDER BY objekt_id", [ODENSE])]


def _seed(url: str) -> None:
    ids = _odense(url)
    with psycopg.connect(url) as conn:
        for oid, name in zip(ids, NAMES):
            conn.execute(f"UPDATE ly.{SHELTERS.current_view} SET navn = %s WHERE objekt_id = %s",
                         [name, oid])
        conn.execute(f"UPDATE ly.{SHELTERS.current_view} SET vejnavn = %s, note = %s "
                     "WHERE objekt_id = %s", [STREET, NOTE, ids[20]])
        conn.execute(f"UPDATE ly.{EVENTS.current_view} SET suppl_sted_beskrivelse = %s WHERE "
                     f"objekt_id = (SELECT objekt_id FROM ly.{EVENTS.current_view} "
                     "WHERE off_kode = 1 ORDER BY objekt_id LIMIT 1)", [PLACE])


@pytest.fixture(scope="module")
def admin(db):
    with TestClient(create_app(make_settings(db)), headers=ADMIN_HEADERS) as c:
        yield c


@pytest.fixture(scope="module")
def anon(db):
    with TestClient(create_app(make_settings(db))) as c:
        yield c


def _problem_field(r) -> str:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()["errors"][0]["field"]


def _rel(doc: dict, rel: str) -> str | None:
    found = [lk["href"] for lk in doc["links"] if lk["rel"] == rel]
    return found[0] if found else None


def _expected_order(url: str, sortby: str, where: str = "beliggenhedskommune = 461") -> list:
    """The ids in SQL's ORDER BY for `sortby`: text in the same collation, ascending NULLS
    LAST, descending NULLS FIRST, then objekt_id."""
    keys = []
    for term in sortby.split(","):
        desc, name = term.startswith("-"), term.lstrip("+-")
        col = f'{name} COLLATE "{COLLATION}"' if SHELTERS.fields_by_name[name].type == "string" \
            else name
        keys.append(f"{col} DESC NULLS FIRST" if desc else f"{col} ASC NULLS LAST")
    return [str(r[0]) for r in query(
        url, f"SELECT objekt_id FROM ly.{SHELTERS.current_view} WHERE {where} "
             f"ORDER BY {', '.join(keys)}, objekt_id")]


def _walk(c, url: str, rel: str = "next") -> list[dict]:
    pages = []
    while url:
        r = c.get(url)
        assert r.status_code == 200, r.text[:300]
        pages.append(r.json())
        url = _rel(pages[-1], rel)
        assert len(pages) < 200
    return pages


# --- sortby and keyset paging -----------------------------------------------------------------

@pytest.mark.parametrize("sortby", [
    "+navn", "-navn", "pladser", "-pladser", "+pladser_verificeret", "-pladser_verificeret",
    "-beskyt_rum_kode,+navn", "+areal_m2,-systid_fra"])
def test_sortby_pages_through_the_whole_result_in_sqls_order_and_back(admin, db, sortby):
    expected = _expected_order(db, sortby)
    assert len(expected) > 60
    first = f"{ITEMS}?beliggenhedskommune={ODENSE}&limit=7&sortby={sortby.replace('+', '%2B')}"
    pages = _walk(admin, first)
    seen = [f["id"] for p in pages for f in p["features"]]
    assert seen == expected  # no duplicate, no gap, SQL's order
    assert len(pages) == -(-len(expected) // 7)
    assert pages[0]["numberMatched"] == len(expected)
    assert _rel(pages[0], "prev") is None
    # prev links from the last page walk back to the first, page for page
    back = _walk(admin, _rel(pages[-1], "prev"), "prev")
    assert [[f["id"] for f in p["features"]] for p in back] == \
        [[f["id"] for f in p["features"]] for p in reversed(pages[:-1])]
    assert _rel(back[-1], "prev") is None
    assert _rel(back[-1], "next") == _rel(pages[0], "next")  # the first page, as reached


def test_text_is_sorted_in_danish(admin):
    r = admin.get(ITEMS, params={"beliggenhedskommune": ODENSE, "sortby": "navn",
                                 "limit": 1000, "properties": "navn"})
    names = [f["properties"]["navn"] for f in r.json()["features"]]
    assert names[-2:] == [None, None]  # NULLs last, ascending
    order = [names.index(n) for n in ("Zebrastien", "Æblehaven", "Øster Allé", "Åløkken")]
    assert order == sorted(order)  # æ, ø, å after z
    assert abs(names.index("Bøgen") - names.index("bøgen")) == 1  # case is a lower level
    # an unencoded + arrives as a space: still ascending
    plain = admin.get(f"{ITEMS}?beliggenhedskommune={ODENSE}&sortby=+navn&limit=1000"
                      "&properties=navn")
    assert [f["properties"]["navn"] for f in plain.json()["features"]] == names
    r = admin.get(ITEMS, params={"beliggenhedskommune": ODENSE, "sortby": "-navn",
                                 "limit": 2, "properties": "navn"})
    assert [f["properties"]["navn"] for f in r.json()["features"]] == [None, None]


def test_the_default_order_pages_both_ways_and_takes_the_old_cursor(admin, db):
    expected = _expected_order(db, "objekt_id", "TRUE")
    pages = _walk(admin, f"{ITEMS}?limit=500")
    assert [f["id"] for p in pages for f in p["features"]] == expected
    back = _walk(admin, _rel(pages[-1], "prev"), "prev")
    assert [p["features"][0]["id"] for p in back] == \
        [p["features"][0]["id"] for p in reversed(pages[:-1])]
    # a cursor from before sortby: a bare objekt_id, the page after it
    r = admin.get(ITEMS, params={"cursor": expected[41], "limit": 5})
    assert [f["id"] for f in r.json()["features"]] == expected[42:47]
    assert _rel(r.json(), "prev") is not None and _rel(r.json(), "first") is not None


def test_the_default_orders_pages_read_the_objekt_id_index_both_ways(db):
    """No regression of the default plan: a next and a prev page read the unique index on
    objekt_id in order (forward, backward), and sort nothing but the page."""
    (oid,) = query(db, f"SELECT objekt_id FROM ly.{SHELTERS.current_view} ORDER BY objekt_id "
                       "OFFSET 1500 LIMIT 1")[0]
    for backward, scan in ((False, "Index Scan using"), (True, "Index Scan Backward using")):
        q = itemsquery.ItemsQuery(limit=10, keyset=itemsquery.Keyset(oid, backward=backward))
        stmt, args = itemsquery.items_sql(q)
        with psycopg.connect(db) as conn:
            plan = "\n".join(r[0] for r in conn.execute(
                psycopg.sql.SQL("EXPLAIN ") + stmt, args).fetchall())
        page = plan.split("CTE page")[1].split("->  Nested Loop")[0]
        assert f"{scan} {SHELTERS.table}_aktuel_uk" in page, plan
        assert "Sort" not in page, plan


def test_sortby_is_refused_when_the_caller_may_not_read_or_sort_on_it(admin, anon, db):
    stays = items_path(STAYS.collection_id)
    planner = bearer(["planner"], subject="planlaegger")
    assert _problem_field(admin.get(stays, params={"sortby": "mid_ov_person"},
                                    headers=planner)) == "sortby"
    assert admin.get(stays, params={"sortby": "mid_ov_person"}).status_code == 200
    assert _problem_field(anon.get(stays, params={"sortby": "mid_ov_person"})) == "sortby"
    assert _problem_field(anon.get(ITEMS, params={"sortby": "bbr_bygning_id"})) == "sortby"
    assert anon.get(ITEMS, params={"sortby": "-pladser"}).status_code == 200
    for bad in ("nosuch", "geometri", "navn,-navn", "", "+", "navn,,pladser", "beskyt_rum"):
        assert _problem_field(admin.get(ITEMS, params={"sortby": bad})) == "sortby", bad


def test_a_cursor_is_checked(admin):
    first = admin.get(ITEMS, params={"sortby": "navn", "limit": 3}).json()
    cursor = re.search(r"cursor=([^&]+)", _rel(first, "next")).group(1)
    # another order's cursor, a bare objekt_id with a sortby, garbage, a forged value
    assert _problem_field(admin.get(ITEMS, params={"sortby": "pladser", "cursor": cursor,
                                                   "limit": 3})) == "cursor"
    assert _problem_field(admin.get(ITEMS, params={"sortby": "navn",
                                                   "cursor": str(uuid.uuid4())})) == "cursor"
    forged = base64.urlsafe_b64encode(json.dumps(
        {"s": "+pladser", "v": ["many"], "id": str(uuid.uuid4())}).encode()).decode()
    def cursor(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    some = str(uuid.uuid4())
    not_a_uuid = cursor({"v": [], "id": 5})
    nul = cursor({"s": "+navn", "v": ["a\u0000b"], "id": some})
    huge = cursor({"s": "+areal_m2", "v": ["1e999999"], "id": some})
    for extra, bad in (({"sortby": "navn"}, nul), ({"sortby": "areal_m2"}, huge),
                       ({}, not_a_uuid)):
        assert _problem_field(admin.get(ITEMS, params={**extra, "cursor": bad})) == "cursor"
    for bad in ("not-a-cursor", "e30", forged):
        assert _problem_field(admin.get(ITEMS, params={"sortby": "pladser",
                                                       "cursor": bad})) == "cursor", bad


# --- properties and skipGeometry ------------------------------------------------------------

def test_properties_choose_among_the_readable_ones(admin, anon):
    doc = admin.get(ITEMS, params={"properties": "navn,pladser,beskyt_rum", "limit": 5}).json()
    assert all(list(f["properties"]) == ["navn", "pladser", "beskyt_rum"] and f["id"]
               for f in doc["features"])
    assert all(f["geometry"]["type"] == "Point" for f in doc["features"])
    one = doc["features"][0]["id"]
    item = admin.get(f"{ITEMS}/{one}", params={"properties": "pladser"}).json()
    assert item["id"] == one and list(item["properties"]) == ["pladser"]
    assert admin.get(ITEMS, params={"properties": "bbr_bygning_id"}).status_code == 200
    for bad in ("nosuch", "bbr_bygning_id", "", "navn,,pladser", "geometri"):
        assert _problem_field(anon.get(ITEMS, params={"properties": bad})) == "properties", bad
    assert _problem_field(anon.get(f"{ITEMS}/{one}",
                                   params={"properties": "bbr_bygning_id"})) == "properties"


def test_skip_geometry(admin):
    doc = admin.get(ITEMS, params={"skipGeometry": "true", "limit": 5}).json()
    assert len(doc["features"]) == 5 and all(f["geometry"] is None for f in doc["features"])
    assert all("navn" in f["properties"] for f in doc["features"])
    doc = admin.get(ITEMS, params={"skipGeometry": "false", "limit": 5}).json()
    assert all(f["geometry"]["type"] == "Point" for f in doc["features"])
    one = doc["features"][0]["id"]
    assert admin.get(f"{ITEMS}/{one}", params={"skipGeometry": "true"}).json()["geometry"] is None
    assert "<table" in admin.get(f"{ITEMS}/{one}", params={"skipGeometry": "true",
                                                           "f": "html"}).text
    assert _problem_field(admin.get(ITEMS, params={"skipGeometry": "maybe"})) == "skipGeometry"


# --- q ----------------------------------------------------------------------------------------

def _q(c, text: str, coll=ITEMS, **extra) -> set[str]:
    r = c.get(coll, params={"q": text, "limit": 10000, **extra})
    assert r.status_code == 200, r.text[:300]
    return {f["id"] for f in r.json()["features"]}


def test_q_matches_every_term_in_name_or_address_ignoring_case_and_accents(admin, db):
    ids = _odense(db)
    cafe, aeble, oster, street = ids[7], ids[2], ids[3], ids[20]
    for text in ("emile cafe", "ÉMILE", "café", "Emile,Cafe", " cafe  émile "):
        assert _q(admin, text) == {cafe}, text
    assert _q(admin, "æblehaven") == _q(admin, "AEBLEHAVEN") == {aeble}
    assert oster in _q(admin, "øster allé") == _q(admin, "OSTER ALLE")
    assert _q(admin, "øster zebrastien") == set()  # every term must match
    assert _q(admin, "kærlighedsstien") == _q(admin, "KAERLIGHEDSSTIEN") == {street}
    assert _q(admin, NOTE) == set()  # a note is neither name nor address
    assert _q(admin, "%") == _q(admin, "_") == set()  # wildcards are text
    # address and name together, with the other filters and the count
    postnr = query(db, f"SELECT postnr FROM ly.{SHELTERS.current_view} WHERE objekt_id = %s",
                   [street])[0][0]
    assert _q(admin, f"kærlighedsstien {postnr}", beliggenhedskommune=ODENSE) == {street}
    r = admin.get(ITEMS, params={"q": "søndergade", "limit": 1}).json()
    (n,) = query(db, f"SELECT count(*) FROM ly.{SHELTERS.current_view} WHERE "
                     "navn ILIKE '%%søndergade%%' OR vejnavn ILIKE '%%søndergade%%'")[0]
    assert r["numberMatched"] == n > 1


def test_q_reads_only_what_the_caller_may_read(admin, anon):
    events = items_path(EVENTS.collection_id)
    found = _q(admin, "bagindgang", events)
    assert len(found) == 1
    assert _q(anon, "bagindgang", events) == set()  # not public: not searched for the public
    (oid,) = found
    name = admin.get(f"{events}/{oid}").json()["properties"]["arrangement"]
    assert oid in _q(anon, name, events)  # the public sees the event by its name


def test_bad_q_is_400(admin):
    for bad in ("", "   ", ",", " ".join(["x"] * 21)):
        assert _problem_field(admin.get(ITEMS, params={"q": bad})) == "q", bad


# --- exports ----------------------------------------------------------------------------------

def test_exports_take_q_and_geojson_takes_properties(admin, db):
    street = _odense(db)[20]
    r = admin.get(ITEMS, params={"f": "csv", "q": "kærlighedsstien"})
    assert r.status_code == 200
    lines = r.text.strip().splitlines()  # a header and one shelter (whatever the dialect)
    assert len(lines) == 2 and street in lines[1], r.text[:300]
    r = admin.get(ITEMS, params={"f": "geojson", "properties": "navn,pladser",
                                 "beliggenhedskommune": ODENSE})
    features = json.loads(r.content)["features"]
    assert features and all(list(f["properties"]) == ["navn", "pladser"] for f in features)
    for params, name in (({"f": "csv", "sortby": "navn"}, "sortby"),
                         ({"f": "gpkg", "properties": "navn"}, "properties"),
                         ({"f": "geojson", "skipGeometry": "true"}, "skipGeometry")):
        assert _problem_field(admin.get(ITEMS, params=params)) == name


# --- the Link header --------------------------------------------------------------------------

_LINK = re.compile(r'<([^>]*)>; rel="([^"]*)"')


def _header_links(r) -> list[tuple[str, str]]:
    return _LINK.findall(r.headers.get("link", ""))


def test_the_link_header_mirrors_the_links(admin):
    first = admin.get(ITEMS, params={"limit": 3, "sortby": "-pladser"})
    second = admin.get(_rel(first.json(), "next"))
    oid = first.json()["features"][0]["id"]
    for r in (first, second, admin.get(f"{ITEMS}/{oid}"),
              admin.get(f"{ITEMS}/{oid}/history")):
        assert r.status_code == 200
        assert _header_links(r) == [(lk["href"], lk["rel"]) for lk in r.json()["links"]]
    assert {"next", "prev", "first"} <= {rel for _, rel in _header_links(second)}
    html = admin.get(_rel(second.json(), "next").replace("f=json", "f=html"))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert {"next", "prev", "first", "self"} <= {rel for _, rel in _header_links(html)}


def test_personal_reader_roles_agree_with_the_database(db_url):
    """`access.PERSONAL_READER_ROLES` (the service refuses sorting on masked attributes with
    it) says what `ly.actor_reads_personal()` says, role by role."""
    import psycopg

    from datamodel import access

    with psycopg.connect(db_url, autocommit=False) as conn:
        for role in access.ROLES:
            actor = access.Actor(subject="t", roles=frozenset({role}), kommuner=frozenset({101}),
                                 cvr=29189846)
            for name, value in access.transaction_settings(actor).items():
                if name == "role":
                    conn.execute(f"SET LOCAL ROLE {value}")
                else:
                    conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            reads = conn.execute("SELECT ly.actor_reads_personal()").fetchone()[0]
            conn.rollback()
            assert reads == (role in access.PERSONAL_READER_ROLES), role
