"""The concept glossary (begrebsliste) in datamodel/concepts.json. No database."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from datamodel.codelists import load_codelists
from datamodel.concepts import CONCEPTS_FILE, Concept, get_concept, load_concepts

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LY_SHARED_DIR", ROOT.parent / "shared"))

#: The concepts of shelter-domain.md §7.1 ("Klargøring(svarsel)" is split in two).
DOMAIN_TERMS = [
    "Beskyttelsesrum",
    "Offentligt beskyttelsesrum",
    "Betondækningsgrav",
    "Sikringsrum",
    "Pladser",
    "Klargøring",
    "Klargøringsvarsel",
    "Eftersyn",
    "Tjekliste / tjekpunkt",
    "Mangel",
    "Udbedring",
    "Egnethed",
    "Eftersynskampagne",
    "Arrangementsplads / arrangement",
]
FKG_TERMS = [
    "objekt_id",
    "versions_id",
    "systid_fra",
    "systid_til",
    "off_kode",
    "cvr_kode",
    "beliggenhedskommune",
    "pladser",
]


def test_load_is_cached_and_typed():
    concepts = load_concepts()
    assert load_concepts() is concepts
    assert isinstance(concepts, tuple)
    assert all(isinstance(c, Concept) for c in concepts)


def test_json_shape():
    raw = json.loads(CONCEPTS_FILE.read_text(encoding="utf-8"))
    assert isinstance(raw, list) and raw
    for entry in raw:
        assert set(entry) == {"term", "gloss", "definition", "source"}
        for key, value in entry.items():
            assert isinstance(value, str) and value.strip() == value and value, (entry, key)
    terms = [e["term"].casefold() for e in raw]
    assert len(terms) == len(set(terms)), "duplicate terms"


@pytest.mark.parametrize("term", DOMAIN_TERMS + FKG_TERMS)
def test_required_terms_present(term):
    concept = get_concept(term)
    assert concept.gloss and concept.definition and concept.source


def test_lookup_is_case_insensitive_and_unknown_raises():
    assert get_concept("BETONDÆKNINGSGRAV").term == "Betondækningsgrav"
    assert get_concept("off_kode").term == "off_kode (synlighed)"
    assert get_concept("off_kode (synlighed)").gloss == "Visibility"
    with pytest.raises(KeyError):
        get_concept("fredsbevarende styrke")


def test_sources_cite_where_they_came_from():
    for c in load_concepts():
        assert re.search(r"§\s*\d", c.source), f"{c.term}: source without a section"


def test_egnethed_matches_its_code_list():
    egnethed = get_concept("Egnethed").definition
    for code in load_codelists()["d_ly_egnethed"]:
        assert code.tekst in egnethed


def test_off_kode_matches_its_code_list():
    off = get_concept("off_kode").definition
    for code in load_codelists()["d_basis_offentlig"]:
        assert f"{code.kode} {code.tekst}" in off


def test_all_domain_concepts_of_the_reference_are_covered():
    doc = SHARED / "reference" / "shelter-domain.md"
    if not doc.is_file():
        pytest.skip(f"{doc} not available")
    text = doc.read_text(encoding="utf-8")
    section = text.split("### 7.1", 1)[1].split("\n### ", 1)[0]
    terms = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("Begreb", "") or set(cells[0]) <= set("-: "):
            continue
        terms.append(cells[0])
    assert len(terms) == 13
    have = {c.term.casefold() for c in load_concepts()}
    for term in terms:
        m = re.fullmatch(r"(\w+)\((\w+)\)", term)  # "Klargøring(svarsel)"
        wanted = [m.group(1), m.group(1) + m.group(2)] if m else [term]
        for w in wanted:
            assert w.casefold() in have, w
