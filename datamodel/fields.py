"""The shelter (beskyttelsesrum) attributes: one definition per field, used by the tables,
the validation rules, the API schemas, queryables and exports.

Names are GeoFA/FKG's (theme 6101 and the generic attributes, see `fkg.t_6101_beskyt_rum`
and `fkg.generel`) and are never renamed. Ly's own extensions follow the same style:
integer `*_kode` fields backed by a code list with a text twin, ASCII names, and a
<=10-character `feltnavn10` alias for shapefiles.
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

    @property
    def short_name(self) -> str:
        return self.feltnavn10 or self.name[:10]

    @property
    def writable(self) -> bool:
        return self.origin is Origin.CLIENT


SYSTEM, SERVER = Origin.SYSTEM, Origin.SERVER

#: Theme code and table name of the GeoFA theme the register mirrors.
TEMAKODE = 6101
TEMANAVN = "t_6101_beskyt_rum_t"

#: Register attributes in output order. The geometry (`geometri`) is handled separately.
SHELTER_FIELDS: tuple[Field, ...] = (
    # --- FKG generic attributes (fkg.generel) ---
    Field("objekt_id", "uuid", "Objekt-ID", "Identitet over objektets levetid", origin=SYSTEM,
          public=True),
    Field("versions_id", "uuid", "Versions-ID", "Identitet for denne version", origin=SYSTEM, public=True),
    Field("systid_fra", "date-time", "Systemtid fra", "Versionens start", origin=SYSTEM, public=True),
    Field("systid_til", "date-time", "Systemtid til", "Versionens slut; tom = gældende",
          origin=SYSTEM, public=True),
    Field("oprettet", "date-time", "Oprettet", "Første systid_fra for objektet", origin=SYSTEM),
    Field("cvr_kode", "integer", "Ansvarlig myndighed (CVR)", codelist="d_basis_ansvarlig_myndighed",
          twin="cvr_navn", description="Standard: kommunen punktet ligger i"),
    Field("bruger_id", "string", "Bruger", "Redigerende bruger", max_length=128, origin=SERVER),
    Field("oprindkode", "integer", "Oprindelse", codelist="d_basis_oprindelse", twin="oprindelse",
          default=0, required=True),
    Field("statuskode", "integer", "Status", codelist="d_basis_status", twin="status", default=3,
          required=True),
    Field("off_kode", "integer", "Synlighed", codelist="d_basis_offentlig", twin="offentlig",
          default=3, required=True, description="GeoFA: 6101 er som udgangspunkt synlig for "
          "alle myndigheder, men ikke offentligheden (3)"),
    Field("noegle", "string", "Nøgle", "Nøgle til objektet i et andet system", max_length=128),
    Field("note", "string", "Note", max_length=254),
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

FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in SHELTER_FIELDS}
CODED_FIELDS: tuple[Field, ...] = tuple(f for f in SHELTER_FIELDS if f.codelist)
TWIN_NAMES: frozenset[str] = frozenset(f.twin for f in CODED_FIELDS if f.twin)
WRITABLE_FIELDS: tuple[Field, ...] = tuple(f for f in SHELTER_FIELDS if f.writable)
#: Fields a client may send back unchanged (e.g. QGIS echoing a feature) and that are ignored.
READ_ONLY_NAMES: frozenset[str] = frozenset(
    [f.name for f in SHELTER_FIELDS if not f.writable] + list(TWIN_NAMES) + ["temakode", "temanavn"]
)
PUBLIC_FIELDS: tuple[Field, ...] = tuple(f for f in SHELTER_FIELDS if f.public)
GEOMETRY_COLUMN = "geometri"
STORAGE_SRID = 25832
