"""OGC API - Features Part 1 Core: landing page, conformance, API definition, collections,
items with paging, bbox, limit and unknown parameters."""

from __future__ import annotations

import json

from datamodel import themes
from tests.conftest import COLLECTION, DEMO_COUNT, ITEMS, query


def _links(doc, rel):
    return [link for link in doc["links"] if link["rel"] == rel]


def test_landing_page_links_the_api_conformance_and_data(ro_client):
    r = ro_client.get("/")
    assert r.status_code == 200
    doc = r.json()
    rels = {link["rel"] for link in doc["links"]}
    assert {"self", "alternate", "service-desc", "service-doc", "conformance", "data"} <= rels
    assert all("type" in link for link in doc["links"])
    assert ro_client.get(_links(doc, "service-desc")[0]["href"]).status_code == 200


def test_conformance_declares_core_crs_filter_and_transactions(ro_client):
    classes = ro_client.get("/conformance").json()["conformsTo"]
    for suffix in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson",
                   "ogcapi-features-1/1.0/conf/html", "ogcapi-features-1/1.0/conf/oas30",
                   "ogcapi-features-2/1.0/conf/crs", "ogcapi-features-3/1.0/conf/filter",
                   "ogcapi-features-4/1.0/conf/create-replace-delete",
                   "cql2/1.0/conf/cql2-text", "cql2/1.0/conf/cql2-json"):
        assert any(c.endswith(suffix) for c in classes), suffix


def test_openapi_is_3_0_and_self_contained(ro_client):
    r = ro_client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.oai.openapi+json;version=3.0")
    spec = r.json()
    assert spec["openapi"].startswith("3.0")
    text = json.dumps(spec)
    refs = [part.split('"')[0] for part in text.split('"$ref": "')[1:]]
    assert refs and all(ref.startswith("#/") for ref in refs), "remote $ref found"
    assert '"type": "null"' not in text  # 3.1-only construct
    items = spec["paths"]["/collections/{collection_id}/items"]
    names = {p["name"] for p in items["get"]["parameters"]}
    assert {"bbox", "limit", "crs", "bbox-crs", "filter", "filter-lang", "pladser"} <= names
    limit = next(p for p in items["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 10000
    assert {"post", "options"} <= set(items)
    assert {"put", "patch", "delete", "options"} <= set(
        spec["paths"]["/collections/{collection_id}/items/{featureId}"])


def test_collections_describe_extent_and_crs(ro_client):
    doc = ro_client.get("/collections").json()
    assert [c["id"] for c in doc["collections"]] == \
        [t.collection_id for t in themes.all_themes()]
    coll = doc["collections"][0]
    assert coll["id"] == "beskyttelsesrum" and coll["x-ly-temakode"] == 6101
    xmin, ymin, xmax, ymax = coll["extent"]["spatial"]["bbox"][0]
    assert 7.5 < xmin < xmax < 15.5 and 54.4 < ymin < ymax < 58
    assert coll["storageCrs"].endswith("/EPSG/0/25832")
    assert coll["crs"][0].endswith("CRS84")
    assert ro_client.get(COLLECTION).json()["id"] == "beskyttelsesrum"


def test_unknown_collection_is_404_problem(ro_client):
    r = ro_client.get("/collections/nope/items")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404


def test_paging_with_next_links_returns_every_shelter_once(ro_client, shared_db_url):
    seen, url, pages = [], ITEMS + "?limit=700", 0
    while url:
        r = ro_client.get(url)
        assert r.status_code == 200
        doc = r.json()
        seen += [f["id"] for f in doc["features"]]
        assert doc["numberReturned"] == len(doc["features"])
        nxt = _links(doc, "next")
        assert all(link["type"] == "application/geo+json" for link in nxt)
        url = nxt[0]["href"] if nxt else None
        pages += 1
    stored = {str(r[0]) for r in query(shared_db_url,
                                       "SELECT objekt_id FROM ly.t_6101_beskyt_rum")}
    assert len(seen) == len(set(seen)) == DEMO_COUNT
    assert set(seen) == stored
    assert pages == 5


def test_number_matched_is_exact_on_the_first_page(ro_client, shared_db_url):
    doc = ro_client.get(ITEMS, params={"limit": 5, "beskyt_rum_kode": 3}).json()
    (count,) = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                                    "WHERE beskyt_rum_kode = 3")[0]
    assert doc["numberMatched"] == count
    assert doc["numberReturned"] == 5


def test_limit_above_maximum_is_clamped_and_bad_limits_are_400(ro_client):
    doc = ro_client.get(ITEMS, params={"limit": 20000}).json()
    assert doc["numberReturned"] == DEMO_COUNT  # all fit under the 10 000 maximum
    for bad in ("0", "-3", "ten", "1.5"):
        r = ro_client.get(ITEMS, params={"limit": bad})
        assert r.status_code == 400, bad
        assert r.json()["errors"][0]["field"] == "limit"


def test_default_limit_is_ten(ro_client):
    assert ro_client.get(ITEMS).json()["numberReturned"] == 10


def test_unknown_query_parameter_is_400_naming_it(ro_client):
    for path in ("/", "/conformance", "/collections", COLLECTION, ITEMS):
        r = ro_client.get(path, params={"colour": "red"})
        assert r.status_code == 400, path
        body = r.json()
        assert body["errors"][0]["field"] == "colour"
        assert r.headers["content-type"] == "application/problem+json"


def test_bbox_returns_exactly_the_shelters_inside(ro_client, shared_db_url):
    bbox = (12.45, 55.6, 12.65, 55.75)  # central Copenhagen
    doc = ro_client.get(ITEMS, params={"bbox": ",".join(map(str, bbox)),
                                       "limit": 10000}).json()
    expected = {str(r[0]) for r in query(
        shared_db_url,
        "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE ST_Intersects(ST_Transform(geometri,"
        " 4326), ST_MakeEnvelope(%s, %s, %s, %s, 4326))", bbox)}
    assert expected and {f["id"] for f in doc["features"]} == expected
    for f in doc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


def test_bad_bbox_values_are_400(ro_client):
    for bad in ("1,2,3", "a,b,c,d", "12,56,11,55", "1,2,3,4,5", "nan,1,2,3"):
        r = ro_client.get(ITEMS, params={"bbox": bad})
        assert r.status_code == 400, bad
        assert r.json()["errors"][0]["field"] == "bbox"


def test_single_item_has_links_and_etag(ro_client):
    feature = ro_client.get(ITEMS, params={"limit": 1}).json()["features"][0]
    r = ro_client.get(f"{ITEMS}/{feature['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    doc = r.json()
    assert doc["id"] == feature["id"]
    assert {"self", "alternate", "collection"} <= {link["rel"] for link in doc["links"]}
    assert r.headers["etag"] == f'"{doc["properties"]["versions_id"]}"'


def test_missing_or_malformed_item_id_is_404_or_400(ro_client):
    assert ro_client.get(f"{ITEMS}/00000000-0000-0000-0000-000000000000").status_code == 404
    r = ro_client.get(f"{ITEMS}/not-a-uuid")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "featureId"


def test_html_is_offered_for_every_resource(ro_client):
    feature_id = ro_client.get(ITEMS, params={"limit": 1}).json()["features"][0]["id"]
    for path in ("/", "/conformance", "/collections", COLLECTION, ITEMS,
                 f"{ITEMS}/{feature_id}", f"{ITEMS}/{feature_id}/history", "/begreber",
                 "/kodelister", f"{COLLECTION}/queryables"):
        r = ro_client.get(path, params={"f": "html"})
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert "<html" in r.text
    r = ro_client.get(ITEMS, headers={"Accept": "text/html"})
    assert r.headers["content-type"].startswith("text/html")


def test_glossary_renders_concepts_in_json_and_html(ro_client):
    doc = ro_client.get("/begreber").json()
    terms = {c["term"]: c for c in doc["concepts"]}
    assert "Betondækningsgrav" in terms and terms["Betondækningsgrav"]["gloss"]
    html = ro_client.get("/begreber", params={"f": "html"}).text
    assert "Betondækningsgrav" in html and terms["Betondækningsgrav"]["gloss"] in html


def test_code_lists_are_served(ro_client):
    doc = ro_client.get("/kodelister/d_6101_beskyt_rum").json()
    assert {v["kode"]: v["tekst"] for v in doc["values"]}[3] == "Betondækningsgrav"
    assert ro_client.get("/kodelister/d_nope").status_code == 404


def test_requests_are_planned_with_their_values_and_never_jit_compiled(ro_client):
    """The app's connections make a plan per request and do no JIT compilation (a dense town
    box with a filter spent 0.6 s compiling a statement that ran in 0.07 s)."""
    async def settings():
        async with ro_client.app.state.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT current_setting('jit'), current_setting('plan_cache_mode')")
            return await cur.fetchone()

    assert ro_client.portal.call(settings) == ("off", "force_custom_plan")
