"""Ly's concept glossary (begrebsliste): the shelter-domain terms and the GeoFA/FKG generic terms.

The entries live in ``datamodel/concepts.json`` as a list of ``{"term", "gloss", "definition",
"source"}``: ``term`` is the Danish term (or the FKG field name), ``gloss`` an English gloss,
``definition`` the definition (mostly Danish) and ``source`` where it came from (sections of the
project's reference documents on the shelter domain and on GeoFA/FKG, and the GeoFA
specification).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CONCEPTS_FILE = Path(__file__).parent / "concepts.json"


@dataclass(frozen=True)
class Concept:
    term: str
    gloss: str
    definition: str
    source: str


@lru_cache(maxsize=None)
def load_concepts() -> tuple[Concept, ...]:
    """All concepts in file order, read once."""
    with CONCEPTS_FILE.open(encoding="utf-8") as f:
        raw = json.load(f)
    concepts = tuple(
        Concept(term=e["term"], gloss=e["gloss"], definition=e["definition"], source=e["source"])
        for e in raw
    )
    terms = [c.term.casefold() for c in concepts]
    if len(set(terms)) != len(terms):
        raise ValueError("concepts.json: duplicate terms")
    return concepts


def get_concept(term: str) -> Concept:
    """The concept with this term, case-insensitive; KeyError if there is none.

    A term with a parenthesised Danish name, such as ``off_kode (synlighed)``, is also found
    by the part before the parenthesis (``off_kode``).
    """
    wanted = term.strip().casefold()
    for concept in load_concepts():
        full = concept.term.casefold()
        if wanted in (full, full.split(" (", 1)[0]):
            return concept
    raise KeyError(f"unknown concept: {term!r}")


__all__ = ["CONCEPTS_FILE", "Concept", "get_concept", "load_concepts"]
