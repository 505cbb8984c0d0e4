"""Themes 6119 Evakueringscenter, 6120 Midlertidig overnatning and 6121 Større udendørs
arrangementer.

Their own attributes are read from GeoFA's published view and table files (copied to
`datamodel/geofa/`, source in its README): types, lengths, NOT NULL, CHECK ranges and code
lists. What GeoFA's files do not say is declared here: Danish titles, the public subset,
personal data (contact persons and phone numbers: never public), defaults and feltnavn10
names where GeoFA's first ten characters collide. Every theme shares the FKG generic
attributes and Ly's `beliggenhedskommune` and `aendringsaarsag`.

Visibility (`off_kode`): GeoFA's default for these themes is not published; Ly defaults to 3
(every authority, not the public), as for the shelters. The public subsets are what a
citizen needs in a crisis: where, what, how many, and when.
"""

from __future__ import annotations

from datamodel.codelists import load_codelists
from datamodel.fields import AENDRINGSAARSAG, BELIGGENHEDSKOMMUNE, Field, generic_fields
from datamodel.themes import MULTIPOLYGON, POINT, Figure, Theme, geofa_attributes

_SHIPPED = tuple(load_codelists())
_PUBLIC = {"public": True}
_PERSONAL = {"personal": True}
_ADDRESS = {
    "vejkode": {"title": "Vejkode", "minimum": 0, "maximum": 9999},
    "vejnavn": {"title": "Vejnavn", **_PUBLIC},
    "cvf_vejkode": {"title": "CVF-vejkode", "feltnavn10": "cvf_vejkod"},
    "husnr": {"title": "Husnummer", **_PUBLIC},
    "postnr": {"title": "Postnummer", "minimum": 800, "maximum": 9999, **_PUBLIC},
    "postnr_by": {"title": "Postdistrikt", **_PUBLIC},
    "adr_id": {"title": "Adresse-ID (DAR)"},
    "link": {"title": "Link"},
}
_VALIDITY = {
    "gyldig_fra": {"title": "Gyldig fra", "description": "Første dag objektet gælder",
                   **_PUBLIC},
    "gyldig_til": {"title": "Gyldig til", "description": "Sidste dag; tom = til videre",
                   **_PUBLIC},
}


def _fields(meta: str, table: str, own: dict[str, dict]) -> tuple[Field, ...]:
    attrs = geofa_attributes(meta, table, shipped_codelists=_SHIPPED,
                             overrides={**_ADDRESS, **own})
    return (*generic_fields(), *attrs, BELIGGENHEDSKOMMUNE, AENDRINGSAARSAG)


EVAKUERINGSCENTER = Theme(
    temakode=6119,
    collection_id="evakueringscenter",
    title="Evakueringscentre",
    singular="evakueringscentret",
    description=(
        "Evakueringscentre (GeoFA tema 6119): steder hvor evakuerede kan indkvarteres og "
        "forplejes, med sove- og spisepladser. Hver ændring er en ny version."),
    geofa_view="t_6119_evaku_centr",
    table="evakueringscenter",
    geometry_type=POINT,
    fields=_fields("fkg.t_6119_evaku_centr.json", "t_6119_evaku_centr_t.json", {
        "evakucenter_ref": {"title": "Reference", "feltnavn10": "evak_ref"},
        "evakucenter": {"title": "Evakueringscenter", **_PUBLIC},
        "funktionsstatus_kode": {"title": "Funktionsstatus", "default": 3, **_PUBLIC},
        "indkvartering_kode": {"title": "Indkvartering", **_PUBLIC},
        "sovepladser": {"title": "Sovepladser", **_PUBLIC},
        "forplejning_kode": {"title": "Forplejning", **_PUBLIC},
        "spisepladser": {"title": "Spisepladser", **_PUBLIC},
        "beredskabsplan_kode": {"title": "Beredskabsplan"},
    }),
    label="evakucenter",
    figures=(Figure("sovepladser", "Sovepladser"), Figure("spisepladser", "Spisepladser")),
    demo="loaders.demo:evacuation_centres",
    meta_file="fkg.t_6119_evaku_centr.json",
    geofa_table_file="t_6119_evaku_centr_t.json",
    colour="#2e7d32",
)

MIDLERTIDIG_OVERNATNING = Theme(
    temakode=6120,
    collection_id="midlertidig_overnatning",
    title="Midlertidig overnatning",
    singular="stedet for midlertidig overnatning",
    description=(
        "Midlertidig overnatning (GeoFA tema 6120): steder hvor 10-1000 personer overnatter "
        "midlertidigt, med kontaktperson, fast vågen vagt og gyldighedsperiode."),
    geofa_view="t_6120_midl_overn",
    table="midlertidig_overnatning",
    geometry_type=POINT,
    fields=_fields("fkg.t_6120_midl_overn.json", "t_6120_midl_overn_t.json", {
        "institutionsnavn": {"title": "Institution", **_PUBLIC},
        "antal_personer": {"title": "Antal personer", **_PUBLIC},
        "mid_ov_person": {"title": "Kontaktperson", "feltnavn10": "kontakt", **_PERSONAL},
        "mid_ov_tlfnr": {"title": "Kontaktpersonens telefon", "feltnavn10": "tlfnr",
                         **_PERSONAL},
        "fast_vaagen_vagt_kode": {"title": "Fast vågen vagt", "feltnavn10": "vaagen_vag"},
        **_VALIDITY,
    }),
    validity=("gyldig_fra", "gyldig_til"),
    label="institutionsnavn",
    figures=(Figure("antal_personer", "Personer"),),
    demo="loaders.demo:temporary_overnight_stays",
    meta_file="fkg.t_6120_midl_overn.json",
    geofa_table_file="t_6120_midl_overn_t.json",
    colour="#8e24aa",
)

STOERRE_UDENDOERS_ARRANGEMENTER = Theme(
    temakode=6121,
    collection_id="stoerre_udendoers_arrangementer",
    title="Større udendørs arrangementer",
    singular="arrangementet",
    description=(
        "Større udendørs arrangementer (GeoFA tema 6121): arealer for festivaler, dyrskuer, "
        "koncerter, lejre og markeder, registreret når beredskabet giver tilladelse, med "
        "forventet deltagerantal og gyldighedsperiode."),
    geofa_view="t_6121_stor_ud_arr",
    table="stoerre_udendoers_arrangementer",
    geometry_type=MULTIPOLYGON,
    fields=_fields("fkg.t_6121_stor_ud_arr.json", "t_6121_stor_ud_arr_t.json", {
        "sua_kode": {"title": "Type arrangement", **_PUBLIC},
        "arrangement": {"title": "Arrangement", **_PUBLIC},
        "forsamlingstelt_kode": {"title": "Forsamlingstelt", "feltnavn10": "fors_telt",
                                 **_PUBLIC},
        "cirkustelt_kode": {"title": "Cirkustelt", "feltnavn10": "cirk_telt", **_PUBLIC},
        "campingomraade_kode": {"title": "Campingområde", "feltnavn10": "camping",
                                **_PUBLIC},
        "salgsomraade_kode": {"title": "Salgsområde", "feltnavn10": "salg", **_PUBLIC},
        "arrangoer": {"title": "Arrangør", **_PUBLIC},
        "adr_i_tekst": {"title": "Adresse (tekst)", **_PUBLIC},
        "suppl_sted_beskrivelse": {"title": "Supplerende stedbeskrivelse"},
        "sua_person": {"title": "Kontaktperson", **_PERSONAL},
        "sua_tlfnr": {"title": "Kontaktpersonens telefon", **_PERSONAL},
        "antal_personer": {"title": "Forventet antal personer", **_PUBLIC},
        **_VALIDITY,
    }),
    validity=("gyldig_fra", "gyldig_til"),
    label="arrangement",
    # The place is also described in words (not public): authorities find an event by it.
    text_search=("arrangement", "adr_i_tekst", "suppl_sted_beskrivelse", "vejnavn", "husnr",
                 "postnr", "postnr_by"),
    figures=(Figure("antal_personer", "Forventede deltagere"),),
    demo="loaders.demo:outdoor_events",
    meta_file="fkg.t_6121_stor_ud_arr.json",
    geofa_table_file="t_6121_stor_ud_arr_t.json",
    colour="#e65100",
)

THEMES = (EVAKUERINGSCENTER, MIDLERTIDIG_OVERNATNING, STOERRE_UDENDOERS_ARRANGEMENTER)
