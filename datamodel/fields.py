"""Attribute definitions: one `Field` per attribute, used by the storage DDL, the validation
rules, the API schemas, queryables and exports of every theme (`datamodel.themes`).

Names are GeoFA/FKG's (the generic attributes of `fkg.generel` and each theme's own) and are
never renamed. Ly's own extensions follow the same style: integer `*_kode` fields backed by a
code list with a text twin, ASCII names, and a <=10-character `feltnavn10` alias for
shapefiles. This module holds what every theme shares: the FKG generic attributes and Ly's
generic extensions; a theme's own attributes live with its descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Origin(str, Enum):
    """Who owns a field's value."""

    SYSTEM = "system"  # set by the versioning (objekt_id, versions_id, systid_*, oprettet)
    SERVER = "server"  # derived by Ly (beliggenhedskommune, text twins, bruger_id)
    CLIENT = "client"  # written by clients


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # integer | number | string | boolean | date | date-time | uuid
    title: str  # Danish label
    description: str = ""
    codelist: str | None = None  # name of the code list the integer refers to
    twin: str | None = None  # name of the text twin exposed beside the code
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False  # required on create (after defaults are applied)
    default: object = None
    origin: Origin = Origin.CLIENT
    fkg: bool = True  # part of GeoFA/FKG (False: Ly extension)
    feltnavn10: str | None = None
    public: bool = False  # part of the public (anonymous) subset of attributes
    #: Personal data (a contact person, a phone number): readable only by the authorities that
    #: may see the object, never by the public or planners, never in public tiles or exports.
    personal: bool = False

    @property
    def short_name(self) -> str:
        return self.feltnavn10 or self.name[:10]

    @property
    def writable(self) -> bool:
        return self.origin is Origin.CLIENT


SYSTEM, SERVER = Origin.SYSTEM, Origin.SERVER


def generic_fields(off_description: str = "", cvr_description: str = "Standard: kommunen "
                   "objektet ligger i") -> tuple[Field, ...]:
    """The FKG generic attributes (fkg.generel) every theme carries, in GeoFA's order."""
    return (
        Field("objekt_id", "uuid", "Objekt-ID", "Identitet over objektets levetid",
              origin=SYSTEM, public=True),
        Field("versions_id", "uuid", "Versions-ID", "Identitet for denne version", origin=SYSTEM,
              public=True),
        Field("systid_fra", "date-time", "Systemtid fra", "Versionens start", origin=SYSTEM,
              public=True),
        Field("systid_til", "date-time", "Systemtid til", "Versionens slut; tom = gældende",
              origin=SYSTEM, public=True),
        Field("oprettet", "date-time", "Oprettet", "Første systid_fra for objektet",
              origin=SYSTEM),
        Field("cvr_kode", "integer", "Ansvarlig myndighed (CVR)",
              codelist="d_basis_ansvarlig_myndighed", twin="cvr_navn",
              description=cvr_description),
        Field("bruger_id", "string", "Bruger", "Redigerende bruger", max_length=128,
              origin=SERVER),
        Field("oprindkode", "integer", "Oprindelse", codelist="d_basis_oprindelse",
              twin="oprindelse", default=0, required=True),
        Field("statuskode", "integer", "Status", codelist="d_basis_status", twin="status",
              default=3, required=True),
        Field("off_kode", "integer", "Synlighed", codelist="d_basis_offentlig",
              twin="offentlig", default=3, required=True, description=off_description),
        Field("noegle", "string", "Nøgle", "Nøgle til objektet i et andet system",
              max_length=128),
        Field("note", "string", "Note", max_length=254),
    )


#: Ly's extensions every theme has: where the object lies (derived) and why a version was made.
BELIGGENHEDSKOMMUNE = Field(
    "beliggenhedskommune", "integer", "Beliggenhedskommune",
    "Kommunen objektet ligger i (afledt af geometrien; for et område den med største del)",
    origin=SERVER, public=True, feltnavn10="beliggenhe")
AENDRINGSAARSAG = Field("aendringsaarsag", "string", "Ændringsårsag",
                        "Hvorfor denne version blev lavet", max_length=254, fkg=False,
                        feltnavn10="aarsag")

GEOMETRY_COLUMN = "geometri"
STORAGE_SRID = 25832
