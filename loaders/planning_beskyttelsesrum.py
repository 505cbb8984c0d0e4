"""The shelters' planning profile (6101): which shelters count, and the scenarios after the
national inspection.

- Places: `pladser` (the theme's figure).
- The base plan counts the shelters that coverage counts (`loaders.reports_beskyttelsesrum`):
  every `funktionsstatus_kode` but 1 Planlagt, 2 Under anlæg, 5 Lukket and 6 Fjernet.
- Planned places: shelters in `funktionsstatus_kode` 1 Planlagt or 2 Under anlæg, which the
  scenario `med-planlagte` adds.
- After the inspections (`egnethed_kode`): `uden-uegnede` leaves out the unfit (3 Uegnet);
  `kun-egnede` also those fit only after repair (2 Egnet efter udbedring).
- By type: `kun-offentlige` leaves out the sikringsrum (`beskyt_rum_kode` 2), keeping the
  public shelters and betondækningsgrave. Any other selection is a scenario of its own
  (`datamodel.planning.parse_scenario`: codes of any coded attribute, a hand-picked list).
"""

from __future__ import annotations

from datamodel.planning import Profile, Scenario, register_profile
from loaders.reports_beskyttelsesrum import COVERAGE_EXCLUDED_STATUS, EFTER_UDBEDRING, UEGNET

PLANNED_STATUS = (1, 2)
SIKRINGSRUM = 2

PROFILE = Profile(
    places="pladser",
    excluded={"funktionsstatus_kode": COVERAGE_EXCLUDED_STATUS},
    planned={"funktionsstatus_kode": PLANNED_STATUS},
    presets={
        "uden-uegnede": ("Uden uegnede beskyttelsesrum (egnethed 3)", Scenario(
            navn="uden-uegnede", udelad={"egnethed_kode": (UEGNET,)})),
        "kun-egnede": ("Uden uegnede og dem, der først er egnede efter udbedring "
                       "(egnethed 2 og 3)", Scenario(
            navn="kun-egnede", udelad={"egnethed_kode": (EFTER_UDBEDRING, UEGNET)})),
        "med-planlagte": ("Med planlagte og beskyttelsesrum under anlæg", Scenario(
            navn="med-planlagte", medtag={"funktionsstatus_kode": PLANNED_STATUS})),
        "kun-offentlige": ("Kun offentlige beskyttelsesrum og betondækningsgrave "
                           "(uden sikringsrum)", Scenario(
            navn="kun-offentlige", udelad={"beskyt_rum_kode": (SIKRINGSRUM,)})),
    },
)

register_profile(6101, PROFILE)
