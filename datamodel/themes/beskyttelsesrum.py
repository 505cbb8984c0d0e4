"""Theme 6101 Beskyttelsesrum: the shelter register, Ly's first theme.

GeoFA's 6101 view (`fkg.t_6101_beskyt_rum`, copied to datamodel/geofa/meta) has few
attributes (type, klargjort, places, link); Ly adds the standard address fields and its own
extensions (name, BBR building, sub-type, area, peacetime use, step-free access, life cycle,
the source and verification of the places, suitability and the inspection fields). The
inspection workflow (6122, `datamodel.checklist`, `service.inspections`) and the BBR and
municipal list imports (`loaders`) belong to this theme.
"""

from __future__ import annotations

from datamodel.fields import SERVER, Field, generic_fields
from datamodel.themes import POINT, Figure, Theme

BETONDAEKNINGSGRAV = 3


def undertype_only_betondaekningsgrav(record: dict) -> list[tuple[str, str]]:
    """Only a betondækningsgrav (beskyt_rum_kode 3) has a sub-type."""
    if record.get("undertype_kode") is not None and \
            record.get("beskyt_rum_kode") != BETONDAEKNINGSGRAV:
        return [("undertype_kode", "only a betondækningsgrav (beskyt_rum_kode 3) has a sub-type")]
    return []

FIELDS: tuple[Field, ...] = (
    *generic_fields(
        off_description="GeoFA: 6101 er som udgangspunkt synlig for alle myndigheder, men "
                        "ikke offentligheden (3)",
        cvr_description="Standard: kommunen punktet ligger i"),
    # --- theme 6101 ---
    Field("beskyt_rum_kode", "integer", "Type beskyttelsesrum", codelist="d_6101_beskyt_rum",
          twin="beskyt_rum", required=True, public=True, feltnavn10="beskyt_rum"),
    Field("klargjort_kode", "integer", "Klargjort til akut brug", codelist="d_basis_ja_nej",
          twin="klargjort", default=3, required=True, feltnavn10="klargjort", public=True),
    Field("pladser", "integer", "Pladser", "Antal pladser (kapacitet)", minimum=1, maximum=9999,
          required=True, public=True),
    Field("link", "string", "Link", max_length=1024),
    # --- standard address fields ---
    Field("adr_id", "uuid", "Adresse-ID (DAR)"),
    Field("vejkode", "integer", "Vejkode", minimum=0, maximum=9999),
    Field("vejnavn", "string", "Vejnavn", max_length=40, public=True),
    Field("husnr", "string", "Husnummer", max_length=4, public=True),
    Field("postnr", "integer", "Postnummer", minimum=800, maximum=9999, public=True),
    Field("postnr_by", "string", "Postdistrikt", max_length=30, public=True),
    Field("beliggenhedskommune", "integer", "Beliggenhedskommune",
          "Kommunen punktet ligger i (afledt af geometrien)", origin=SERVER, public=True,
          feltnavn10="beliggenhe"),
    # --- Ly extensions (not in GeoFA) ---
    Field("navn", "string", "Navn", max_length=254, fkg=False, public=True),
    Field("bbr_bygning_id", "uuid", "BBR-bygning", "BBR-bygningens id", fkg=False,
          feltnavn10="bbr_byg_id"),
    Field("undertype_kode", "integer", "Undertype", "Betondækningsgravens form",
          codelist="d_ly_undertype", twin="undertype", fkg=False, feltnavn10="undertype"),
    Field("areal_m2", "number", "Areal (m²)", "Gulvareal", minimum=0.5, maximum=100000,
          fkg=False),
    Field("beskyt_rum_anvendelse_kode", "integer", "Fredstidsanvendelse",
          codelist="d_6122_beskyt_rum_anvendelse", twin="beskyt_rum_anvendelse", fkg=False,
          feltnavn10="anvendelse"),
    Field("trinfri_adgang_kode", "integer", "Trinfri adgang", codelist="d_basis_ja_nej",
          twin="trinfri_adgang", fkg=False, feltnavn10="trinfri", public=True),
    Field("funktionsstatus_kode", "integer", "Livscyklus", "Aktiv, midlertidig lukket, lukket …",
          codelist="d_basis_funktionsstatus", twin="funktionsstatus", default=3, required=True,
          fkg=False, feltnavn10="funktionss", public=True),
    Field("pladser_kilde_kode", "integer", "Kilde til pladstal", codelist="d_ly_pladser_kilde",
          twin="pladser_kilde", default=9, required=True, fkg=False, feltnavn10="pl_kilde"),
    Field("pladser_verificeret", "integer", "Verificerede pladser",
          "Pladser fastslået ved eftersyn", minimum=0, maximum=9999, fkg=False,
          feltnavn10="pl_verific"),
    Field("egnethed_kode", "integer", "Egnethed", codelist="d_ly_egnethed", twin="egnethed",
          default=9, required=True, fkg=False, feltnavn10="egnethed"),
    Field("seneste_eftersyn_dato", "date", "Seneste eftersyn", "Dato for seneste godkendte "
          "eftersyn", origin=SERVER, fkg=False, feltnavn10="eft_senest"),
    Field("naeste_eftersyn_dato", "date", "Næste eftersyn", "Hvornår næste eftersyn forfalder",
          origin=SERVER, fkg=False, feltnavn10="eft_naeste"),
    Field("seneste_eftersyn_id", "uuid", "Seneste eftersyn (id)", origin=SERVER, fkg=False,
          feltnavn10="eft_id"),
    Field("aendringsaarsag", "string", "Ændringsårsag", "Hvorfor denne version blev lavet",
          max_length=254, fkg=False, feltnavn10="aarsag"),
)

THEME = Theme(
    temakode=6101,
    collection_id="beskyttelsesrum",
    title="Beskyttelsesrum",
    singular="beskyttelsesrummet",
    description=(
        "Offentlige beskyttelsesrum, sikringsrum og betondækningsgrave (GeoFA tema 6101 med "
        "Lys udvidelser). Hver ændring er en ny version; intet slettes fysisk."),
    geofa_view="t_6101_beskyt_rum",
    table="beskyttelsesrum",
    geometry_type=POINT,
    fields=FIELDS,
    # During a national activation the public sees every public shelter and
    # betondækningsgrav (beskyt_rum_kode 1 and 3), whatever its off_kode.
    activation_public="beskyt_rum_kode IN (1, 3)",
    assignable=True,
    label="navn",
    figures=(Figure("pladser", "Pladser"),),
    demo="loaders.demo:shelters",
    meta_file="fkg.t_6101_beskyt_rum.json",
    geofa_table_file="t_6101_beskyt_rum_t.json",
    rules=(undertype_only_betondaekningsgrav,),
    colour="#1f6fb2",
)
