"""The code lists in datamodel/codelists/ and the municipality table in loaders/data/.

No database. The comparisons with GeoFA's published schema need the shared reference material
(``../shared`` beside the checkout, or ``$LY_SHARED_DIR``) and are skipped without it; the other
tests run on a fresh clone.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from datamodel.codelists import Code, CodeList, get_codelist, load_codelists

ROOT = Path(__file__).resolve().parents[1]
CODELIST_DIR = ROOT / "datamodel" / "codelists"
DATA_DIR = ROOT / "loaders" / "data"
SHARED = Path(os.environ.get("LY_SHARED_DIR", ROOT.parent / "shared"))
GEOFA = SHARED / "geofa"

GEOFA_LISTS = {
    "d_6101_beskyt_rum",
    "d_6121_sua",
    "d_basis_ja_nej",
    "d_basis_status",
    "d_basis_offentlig",
    "d_basis_oprindelse",
    "d_basis_handicapegnet",
    "d_basis_funktionsstatus",
    "d_basis_ansvarlig_myndighed",
    "d_6122_ja_nej_ved_ikke",
    "d_6122_beskyt_rum",
    "d_6122_beskyt_rum_anvendelse",
}
LY_LISTS = {"d_ly_undertype", "d_ly_pladser_kilde", "d_ly_egnethed"}
CHRISTIANSOE = 411


def needs_shared() -> Path:
    if not GEOFA.is_dir():
        pytest.skip(f"shared GeoFA reference material not found at {GEOFA}")
    return GEOFA


def municipal_codes() -> dict[int, Code]:
    """kommunekode -> value of d_basis_ansvarlig_myndighed, for values that have one."""
    out: dict[int, Code] = {}
    for code in get_codelist("d_basis_ansvarlig_myndighed"):
        kk = code.extra["kommunekode"]
        if kk is not None:
            assert kk not in out, f"kommunekode {kk} appears twice"
            out[kk] = code
    return out


def dagi_codes() -> set[int]:
    with (DATA_DIR / "dk-municipalities-dagi-500k.geojson").open(encoding="utf-8") as f:
        gj = json.load(f)
    return {int(ft["properties"]["lau_1"]) for ft in gj["features"]}


def population() -> dict[int, str]:
    with (DATA_DIR / "dk-population-by-municipality.csv").open(encoding="utf-8") as f:
        return {int(r["kommunekode"]): r["kommunenavn"] for r in csv.DictReader(f)}


def kommuner_rows() -> list[dict[str, str]]:
    with (DATA_DIR / "kommuner.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["kommunekode", "navn", "cvr_kode"]
        return list(reader)


# --- the files and the loader ----------------------------------------------------------------


def test_all_lists_present():
    assert set(load_codelists()) == GEOFA_LISTS | LY_LISTS


@pytest.mark.parametrize("path", sorted(CODELIST_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_file_format(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["name"] == path.stem
    assert isinstance(data["source"], str) and data["source"].strip()
    assert isinstance(data["description"], str) and data["description"].strip()
    assert data["values"], "empty list"
    kodes = []
    for v in data["values"]:
        assert {"kode", "tekst", "aktiv", "begrebsdefinition"} <= v.keys()
        assert type(v["kode"]) is int
        assert isinstance(v["tekst"], str) and v["tekst"] == v["tekst"].strip() and v["tekst"]
        assert v["aktiv"] in (0, 1)
        assert v["begrebsdefinition"] is None or (
            isinstance(v["begrebsdefinition"], str) and v["begrebsdefinition"].strip()
        )
        kodes.append(v["kode"])
    assert len(kodes) == len(set(kodes)), "duplicate codes"


def test_load_is_cached_and_typed():
    lists = load_codelists()
    assert load_codelists() is lists
    for name, cl in lists.items():
        assert isinstance(cl, CodeList) and cl.name == name
        assert isinstance(cl.values, tuple) and all(isinstance(c, Code) for c in cl.values)
    assert get_codelist("d_basis_ja_nej") is lists["d_basis_ja_nej"]


def test_unknown_list_raises_keyerror():
    with pytest.raises(KeyError):
        get_codelist("d_findes_ikke")


def test_lookups():
    jn = get_codelist("d_basis_ja_nej")
    assert jn.text(0) == "Nej"
    assert jn.text(1) == "Ja"
    assert jn.text(3) == "Ukendt"
    assert jn.text(4) is None
    assert jn.get(99) is None
    code = jn.get(2)
    assert code == Code(2, "Blandet", True, code.begrebsdefinition, {})
    assert 2 in jn and 7 not in jn
    assert jn.is_valid(1) and not jn.is_valid(5)
    assert len(jn) == 4 and [c.kode for c in jn] == [0, 1, 2, 3]
    assert get_codelist("d_basis_offentlig").text(3) == (
        "Synlig for alle myndigheder, men ikke offentligheden"
    )
    assert get_codelist("d_6101_beskyt_rum").text(3) == "Betondækningsgrav"
    assert get_codelist("d_6122_beskyt_rum_anvendelse").text(4) == "Opfyldt, fx med jord."
    cvr = get_codelist("d_basis_ansvarlig_myndighed")
    assert cvr.text(29189420) == "Aalborg Kommune"
    assert cvr.get(29189420).extra == {"kommunekode": 851}
    assert cvr.get(41575727).extra == {"kommunekode": None}  # SAMSIK
    assert cvr.get(29189420).as_dict() == {
        "kode": 29189420,
        "tekst": "Aalborg Kommune",
        "aktiv": 1,
        "begrebsdefinition": None,
        "kommunekode": 851,
    }


def test_codes_are_hashable_and_active_filter():
    cl = get_codelist("d_basis_ansvarlig_myndighed")
    assert len({hash(c) for c in cl}) > 1
    inactive = Code(5, "Gammel", False, None, {})
    test_list = CodeList("d_test", "test", "test", (Code(1, "Ny", True, None, {}), inactive))
    assert test_list.codes() == {1}
    assert test_list.all_codes() == {1, 5}
    assert test_list.text(5) == "Gammel"
    assert not test_list.is_valid(5) and test_list.is_valid(5, include_inactive=True)


def test_two_yes_no_encodings_are_kept_apart():
    jn = get_codelist("d_basis_ja_nej")
    assert jn.codes() == jn.all_codes() == {0, 1, 2, 3}
    assert [(c.kode, c.tekst) for c in jn] == [(0, "Nej"), (1, "Ja"), (2, "Blandet"), (3, "Ukendt")]
    jnv = get_codelist("d_6122_ja_nej_ved_ikke")
    assert jnv.codes() == jnv.all_codes() == {1, 2, 3}
    assert [(c.kode, c.tekst) for c in jnv] == [(1, "Ja"), (2, "Nej"), (3, "Ved ikke")]


def test_known_geofa_values():
    expect = {
        "d_6101_beskyt_rum": {1: "Beskyttelsesrum", 2: "Sikringsrum", 3: "Betondækningsgrav",
                              8: "Andet", 9: "Ukendt"},
        "d_basis_status": {0: "Ukendt", 1: "Kladde", 2: "Forslag", 3: "Gældende / Vedtaget",
                           4: "Ikke gældende / Aflyst"},
        "d_basis_offentlig": {1: "Synlig for alle", 2: "Synlig for den ansvarlige myndighed",
                              3: "Synlig for alle myndigheder, men ikke offentligheden"},
        "d_basis_funktionsstatus": {1: "Planlagt", 2: "Under anlæg", 3: "Aktiv",
                                    4: "Midlertidig lukket", 5: "Lukket", 6: "Fjernet",
                                    8: "Andet", 9: "Ukendt"},
        "d_basis_handicapegnet": {1: "Handicapegnet", 2: "Delvist handicapegnet",
                                  3: "Ikke handicapegnet", 4: "Handicapvenligt", 8: "Andet",
                                  9: "Ukendt"},
        "d_6122_beskyt_rum": {1: "Betondækningsgrav"},
        "d_6122_beskyt_rum_anvendelse": {1: "Anvendes ikke", 2: "Depot/opbevaring",
                                         3: "Aktiviteter, fx øvelokale",
                                         4: "Opfyldt, fx med jord."},
    }
    for name, values in expect.items():
        cl = get_codelist(name)
        assert {c.kode: c.tekst for c in cl} == values, name
    assert get_codelist("d_basis_oprindelse").all_codes() == set(range(13))


def test_6101_and_ly_lists_have_definitions():
    for name in {"d_6101_beskyt_rum"} | LY_LISTS:
        for c in get_codelist(name):
            assert c.begrebsdefinition, f"{name} {c.kode} lacks a begrebsdefinition"
    for c in get_codelist("d_6101_beskyt_rum"):
        assert c.extra["geofa_begrebsdefinition"]


def test_ly_lists():
    expect = {
        "d_ly_undertype": {1: "Rør", 2: "Kuppel", 3: "Firkant", 9: "Ukendt"},
        "d_ly_pladser_kilde": {1: "BBR", 2: "Kommunal liste", 3: "Eftersyn", 8: "Andet",
                               9: "Ukendt"},
        "d_ly_egnethed": {1: "Egnet", 2: "Egnet efter udbedring", 3: "Uegnet",
                          9: "Ikke vurderet"},
    }
    for name, values in expect.items():
        cl = get_codelist(name)
        assert cl.source == "Ly"
        assert {c.kode: c.tekst for c in cl} == values
        assert cl.codes() == set(values)


# --- municipalities, CVR numbers and kommuner.csv --------------------------------------------


def test_each_municipality_has_exactly_one_cvr():
    by_kommune = municipal_codes()
    pop = population()
    assert len(pop) == 98
    assert set(by_kommune) == set(pop) | {CHRISTIANSOE}
    assert by_kommune[CHRISTIANSOE].kode == 25775635
    cvrs = [c.kode for c in by_kommune.values()]
    assert len(cvrs) == len(set(cvrs))
    for kk, code in by_kommune.items():
        if kk != CHRISTIANSOE:
            assert code.tekst.endswith("Kommune") or code.tekst == "Bornholms Regionskommune"


def test_cvr_codes_unique_and_non_municipal_have_no_kommunekode():
    cl = get_codelist("d_basis_ansvarlig_myndighed")
    kodes = [c.kode for c in cl]
    assert len(kodes) == len(set(kodes))
    assert all(c.aktiv for c in cl)
    assert all("kommunekode" in c.extra for c in cl)
    for kode in (41575727, 35440178, 33157274, 99999999, 100000113):  # SAMSIK, HBR, NST, ...
        assert cl.get(kode).extra["kommunekode"] is None


def test_tricky_municipality_names():
    by_kommune = municipal_codes()
    assert by_kommune[101].tekst == "Københavns Kommune"
    assert by_kommune[400].tekst == "Bornholms Regionskommune"
    assert by_kommune[751].tekst == "Aarhus Kommune"
    assert by_kommune[810].tekst == "Brønderslev Kommune"
    assert by_kommune[820].tekst == "Vesthimmerlands Kommune"
    assert by_kommune[169].tekst == "Høje-Taastrup Kommune"
    assert by_kommune[756].tekst == "Ikast-Brande Kommune"
    assert by_kommune[173].tekst == "Lyngby-Taarbæk Kommune"
    assert by_kommune[217].tekst == "Helsingør Kommune"  # not "Helsingør Kommunes Beredskab"


def test_kommuner_csv_matches_dagi_population_and_codelist():
    rows = kommuner_rows()
    codes = [int(r["kommunekode"]) for r in rows]
    assert codes == sorted(codes) and len(codes) == len(set(codes))
    assert all(not r["kommunekode"].startswith("0") for r in rows)
    assert set(codes) == dagi_codes()  # DAGI has the 98 municipalities and Christiansø
    pop = population()
    assert set(codes) - {CHRISTIANSOE} == set(pop)
    by_kommune = municipal_codes()
    for r in rows:
        kk = int(r["kommunekode"])
        assert int(r["cvr_kode"]) == by_kommune[kk].kode
        assert r["navn"] == pop.get(kk, "Christiansø")
    cvrs = [r["cvr_kode"] for r in rows]
    assert len(cvrs) == len(set(cvrs))
    names = {int(r["kommunekode"]): r["navn"] for r in rows}
    assert names[751] == "Aarhus" and names[101] == "København" and names[400] == "Bornholm"


def test_copied_data_files_are_readable():
    assert len(dagi_codes()) == 99
    with (DATA_DIR / "dk-municipalities-dagi-500k.geojson").open(encoding="utf-8") as f:
        assert len(json.load(f)["features"]) == 311
    assert len(population()) == 98


@pytest.mark.parametrize(
    "name", ["dk-municipalities-dagi-500k.geojson", "dk-population-by-municipality.csv"]
)
def test_copied_data_files_identical_to_shared(name):
    src = SHARED / "data" / name
    if not src.is_file():
        pytest.skip(f"{src} not available")
    assert (DATA_DIR / name).read_bytes() == src.read_bytes()


# --- comparison with GeoFA's published schema (needs the shared material) --------------------


def _meta_fields(meta: dict) -> dict[str, dict]:
    return meta.get("fields") or {}


def test_meta_restrictions_match_codelists():
    """Every published field that refers to one of our GeoFA lists allows exactly its codes."""
    geofa = needs_shared()
    lists = load_codelists()
    seen: dict[str, int] = {}
    for path in sorted((geofa / "meta").glob("*.json")):
        meta = json.loads(path.read_text(encoding="utf-8"))
        for field_name, spec in _meta_fields(meta).items():
            props = spec.get("properties")
            rel = props.get("_rel") if isinstance(props, dict) else None
            if not rel:
                continue
            name = rel.split(".", 1)[-1]
            if name not in lists:
                continue
            restriction = spec.get("_restriction", spec.get("restriction"))
            assert restriction, f"{path.name}:{field_name} has no restriction"
            cl = lists[name]
            where = f"{path.name}:{field_name} vs {name}"
            assert {int(r["value"]) for r in restriction} == cl.codes(), where
            texts = {int(r["value"]): r["alias"].rstrip() for r in restriction}
            assert texts == {c.kode: c.tekst for c in cl if c.aktiv}, where
            seen[name] = seen.get(name, 0) + 1
    # The 6122 meta uses these lists; make sure the loop really compared them.
    for name in ("d_basis_ansvarlig_myndighed", "d_basis_oprindelse", "d_basis_status",
                 "d_basis_offentlig", "d_6122_beskyt_rum", "d_6122_beskyt_rum_anvendelse"):
        assert seen.get(name) == 1, name
    assert seen.get("d_6122_ja_nej_ved_ikke") == 74


def test_6101_meta_has_no_restrictions():
    """Why d_6101_beskyt_rum comes from the reference document instead of the meta."""
    geofa = needs_shared()
    meta = json.loads((geofa / "meta" / "fkg.t_6101_beskyt_rum.json").read_text(encoding="utf-8"))
    fields = _meta_fields(meta)
    assert "beskyt_rum_kode" in fields and "klargjort_kode" in fields
    assert fields["beskyt_rum_kode"].get("restriction") is None


def test_geofa_lists_exist_as_official_tables():
    """Each GeoFA list is an official code-list table; lists whose table has no
    begrebsdefinition column carry none."""
    geofa = needs_shared()
    for name in GEOFA_LISTS:
        table = geofa / "tables" / f"{name}.json"
        assert table.is_file(), name
        columns = {c["name"] for c in json.loads(table.read_text(encoding="utf-8"))["columns"]}
        assert "aktiv" in columns
        if "begrebsdefinition" not in columns:
            assert all(c.begrebsdefinition is None for c in get_codelist(name)
                       if c.kode != 99999999), name
    columns = json.loads((geofa / "tables" / "d_basis_ansvarlig_myndighed.json").read_text(
        encoding="utf-8"))["columns"]
    assert "kommunekode" in {c["name"] for c in columns}


def test_shared_dagi_labels_match_kommuner_csv():
    """Names differ between DAGI and DST only for the documented cases."""
    src = SHARED / "data" / "dk-municipalities-dagi-500k.geojson"
    if not src.is_file():
        pytest.skip(f"{src} not available")
    gj = json.loads(src.read_text(encoding="utf-8"))
    dagi = {int(f["properties"]["lau_1"]): f["properties"]["label_dk"] for f in gj["features"]}
    csv_names = {int(r["kommunekode"]): r["navn"] for r in kommuner_rows()}
    differ = {k: (dagi[k], csv_names[k]) for k in dagi if dagi[k] != csv_names[k]}
    assert differ == {
        751: ("Århus", "Aarhus"),
        810: ("Brønderslev-Dronninglund", "Brønderslev"),
        820: ("Vesthimmerland", "Vesthimmerlands"),
    }


# --- the field definitions that refer to the lists -------------------------------------------


def test_field_definitions_refer_to_existing_lists():
    from datamodel import themes

    lists = load_codelists()
    coded = [f for t in themes.all_themes() for f in t.coded_fields]
    assert coded
    for f in coded:
        assert f.codelist in lists, f"{f.name} refers to unknown list {f.codelist}"
        if f.default is not None:
            assert f.default in lists[f.codelist].codes(), f"{f.name} default {f.default}"
