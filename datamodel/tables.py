"""The register's tables as SQLAlchemy Core metadata (GeoAlchemy2 for geometry).

The migrations are the source of truth for the database; this module describes the same
tables for code that wants typed table objects (loaders, exports) and is checked against a
migrated database in the tests (`alembic` autogenerate finds no difference).
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, Date, DateTime, ForeignKey,
                        ForeignKeyConstraint, Index, Integer, LargeBinary, MetaData, Numeric,
                        SmallInteger, String, Table, Text, text)
from sqlalchemy.dialects.postgresql import ARRAY, CHAR, JSONB, UUID

from datamodel.fields import CODED_FIELDS

SCHEMA = "ly"
metadata = MetaData(schema=SCHEMA)


def _codelist(name: str, *extra: Column) -> Table:
    return Table(
        name, metadata,
        Column("kode", Integer, primary_key=True, autoincrement=False),
        Column("tekst", String(128), nullable=False),
        Column("aktiv", SmallInteger, CheckConstraint("aktiv IN (0, 1)"), nullable=False,
               server_default=text("1")),
        Column("begrebsdefinition", String),
        *extra,
    )


CODELIST_TABLES = {
    name: _codelist(name)
    for name in sorted({f.codelist for f in CODED_FIELDS} | {"d_6122_ja_nej_ved_ikke",
                                                            "d_6122_beskyt_rum"})
    if name != "d_basis_ansvarlig_myndighed"
}
CODELIST_TABLES["d_basis_ansvarlig_myndighed"] = _codelist(
    "d_basis_ansvarlig_myndighed", Column("kommunekode", Integer))

kommune = Table(
    "kommune", metadata,
    Column("kommunekode", Integer, primary_key=True, autoincrement=False),
    Column("navn", String(60), nullable=False),
    Column("cvr_kode", Integer),
    Column("geometri", Geometry("MULTIPOLYGON", srid=25832, spatial_index=False), nullable=False),
    Index("kommune_geometri_gist", "geometri", postgresql_using="gist"),
)

postnummer = Table(
    "postnummer", metadata,
    Column("postnr", Integer, primary_key=True, autoincrement=False),
    Column("navn", String(40), nullable=False),
    Column("geometri", Geometry("MULTIPOLYGON", srid=25832, spatial_index=False), nullable=False),
    Index("postnummer_geometri_gist", "geometri", postgresql_using="gist"),
)


def _code(name: str, codelist: str, nullable: bool = True, **kw) -> Column:
    return Column(name, Integer, ForeignKey(f"{SCHEMA}.{codelist}.kode"), nullable=nullable, **kw)


#: Every version of every shelter (GeoFA: fkg.generel joined with t_6101_beskyt_rum_t).
beskyttelsesrum = Table(
    "beskyttelsesrum", metadata,
    Column("versions_id", UUID(as_uuid=True), primary_key=True),
    Column("objekt_id", UUID(as_uuid=True), nullable=False),
    Column("systid_fra", DateTime(timezone=True), nullable=False),
    Column("systid_til", DateTime(timezone=True)),
    Column("oprettet", DateTime(timezone=True), nullable=False),
    _code("cvr_kode", "d_basis_ansvarlig_myndighed", nullable=False),
    Column("bruger_id", String(128), nullable=False),
    _code("oprindkode", "d_basis_oprindelse", nullable=False),
    _code("statuskode", "d_basis_status", nullable=False),
    _code("off_kode", "d_basis_offentlig", nullable=False, server_default=text("3")),
    Column("noegle", String(128)),
    Column("note", String(254)),
    _code("beskyt_rum_kode", "d_6101_beskyt_rum", nullable=False),
    _code("klargjort_kode", "d_basis_ja_nej", nullable=False),
    Column("pladser", Integer, CheckConstraint("pladser BETWEEN 1 AND 9999", name="pladser_range"),
           nullable=False),
    Column("link", String(1024)),
    Column("adr_id", UUID(as_uuid=True)),
    Column("vejkode", Integer, CheckConstraint("vejkode BETWEEN 0 AND 9999", name="vejkode_range")),
    Column("vejnavn", String(40)),
    Column("husnr", String(4)),
    Column("postnr", Integer, CheckConstraint("postnr BETWEEN 800 AND 9999", name="postnr_range")),
    Column("postnr_by", String(30)),
    Column("beliggenhedskommune", Integer),
    Column("navn", String(254)),
    Column("bbr_bygning_id", UUID(as_uuid=True)),
    _code("undertype_kode", "d_ly_undertype"),
    Column("areal_m2", Numeric(9, 1), CheckConstraint("areal_m2 > 0", name="areal_m2_range")),
    _code("beskyt_rum_anvendelse_kode", "d_6122_beskyt_rum_anvendelse"),
    _code("trinfri_adgang_kode", "d_basis_ja_nej"),
    _code("funktionsstatus_kode", "d_basis_funktionsstatus", nullable=False),
    _code("pladser_kilde_kode", "d_ly_pladser_kilde", nullable=False),
    Column("pladser_verificeret", Integer,
           CheckConstraint("pladser_verificeret BETWEEN 0 AND 9999",
                           name="pladser_verificeret_range")),
    _code("egnethed_kode", "d_ly_egnethed", nullable=False),
    Column("geometri", Geometry("POINT", srid=25832, spatial_index=False), nullable=False),
    Column("seneste_eftersyn_dato", Date),
    Column("naeste_eftersyn_dato", Date),
    Column("seneste_eftersyn_id", UUID(as_uuid=True)),
    Column("aendringsaarsag", String(254)),
    CheckConstraint("systid_til IS NULL OR systid_til >= systid_fra", name="systid_order"),
    Index("beskyttelsesrum_aktuel_uk", "objekt_id", unique=True,
          postgresql_where=text("systid_til IS NULL")),
    Index("beskyttelsesrum_historik", "objekt_id", "systid_fra"),
    Index("beskyttelsesrum_aktuel_gist", "geometri", postgresql_using="gist",
          postgresql_where=text("systid_til IS NULL")),
    Index("beskyttelsesrum_gist", "geometri", postgresql_using="gist"),
    Index("beskyttelsesrum_systid", "systid_fra", "systid_til"),
)

# --- access control (migration 0002) ---

#: The national activation switch; append-only, the newest row is in force.
aktivering = Table(
    "aktivering", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("aktiv", Boolean, nullable=False),
    Column("begrundelse", String(500), nullable=False),
    Column("tid", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("subjekt", String(256), nullable=False, server_default=text("ly.actor_subject()")),
    Column("cvr_kode", Integer, server_default=text("ly.actor_cvr()")),
)

#: Which inspector (subject) may see which shelter.
tildeling = Table(
    "tildeling", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("objekt_id", UUID(as_uuid=True), nullable=False),
    Column("subjekt", String(256), nullable=False),
    Column("cvr_kode", Integer),
    Column("aktiv", Boolean, nullable=False, server_default=text("true")),
    Column("tid", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("tildelt_af", String(256), nullable=False,
           server_default=text("ly.actor_subject()")),
    Column("kampagne_id", UUID(as_uuid=True), ForeignKey("ly.kampagne.id")),
    Index("tildeling_subjekt", "subjekt", "objekt_id", postgresql_where=text("aktiv")),
)

#: The audit trail: who, when, what (before and after versions), through which client.
revision = Table(
    "revision", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tid", DateTime(timezone=True), nullable=False,
           server_default=text("clock_timestamp()")),
    Column("subjekt", String(256), nullable=False),
    Column("cvr_kode", Integer),
    Column("roller", ARRAY(Text), nullable=False),
    Column("klient", String(256)),
    Column("handling", String(20), nullable=False),
    Column("tabel", String(63), nullable=False),
    Column("objekt_id", UUID(as_uuid=True)),
    Column("foer_versions_id", UUID(as_uuid=True)),
    Column("efter_versions_id", UUID(as_uuid=True)),
    Column("detaljer", JSONB),
    Index("revision_objekt", "objekt_id", "tid"),
    Index("revision_cvr", "cvr_kode", "tid"),
)

#: API keys of machine clients; only a SHA-256 hash of each key is kept.
api_noegle = Table(
    "api_noegle", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("navn", String(128), nullable=False, unique=True),
    Column("hash", CHAR(64), nullable=False, unique=True),
    Column("roller", ARRAY(Text), nullable=False),
    Column("cvr_kode", Integer),
    Column("kommuner", ARRAY(Integer), nullable=False, server_default=text("'{}'")),
    Column("aktiv", Boolean, nullable=False, server_default=text("true")),
    Column("oprettet", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# --- inspections (migration 0003) ---

def _template_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tjekliste_kode", "tjekliste_version"],
                                ["ly.tjekliste.kode", "ly.tjekliste.version"])

#: Checklist templates, one row per version; a stored version never changes.
tjekliste = Table(
    "tjekliste", metadata,
    Column("kode", String(64), primary_key=True),
    Column("version", Integer, CheckConstraint("version > 0"), primary_key=True,
           autoincrement=False),
    Column("titel", String(254), nullable=False),
    Column("indhold", JSONB, nullable=False),
    Column("indhold_hash", CHAR(64), nullable=False),
    Column("oprettet", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

kampagne = Table(
    "kampagne", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("navn", String(254), nullable=False),
    Column("tjekliste_kode", String(64), nullable=False),
    Column("tjekliste_version", Integer, nullable=False),
    Column("periode_fra", Date, nullable=False),
    Column("periode_til", Date, nullable=False),
    Column("frist", Date, nullable=False),
    Column("udvalg", JSONB, nullable=False),
    Column("cvr_kode", Integer),
    Column("oprettet_af", String(256), nullable=False,
           server_default=text("ly.actor_subject()")),
    Column("oprettet", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    _template_fk(),
    CheckConstraint("periode_fra <= periode_til"),
)

kampagne_udvalg = Table(
    "kampagne_udvalg", metadata,
    Column("kampagne_id", UUID(as_uuid=True), ForeignKey("ly.kampagne.id", ondelete="CASCADE"),
           primary_key=True),
    Column("objekt_id", UUID(as_uuid=True), primary_key=True),
    Column("cvr_kode", Integer),
    Column("beliggenhedskommune", Integer),
)

eftersyn = Table(
    "eftersyn", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("objekt_id", UUID(as_uuid=True), nullable=False),
    Column("kampagne_id", UUID(as_uuid=True), ForeignKey("ly.kampagne.id")),
    Column("tjekliste_kode", String(64), nullable=False),
    Column("tjekliste_version", Integer, nullable=False),
    Column("status", String(12), nullable=False),
    Column("svar", JSONB, nullable=False, server_default=text("'{}'")),
    Column("rum", JSONB, nullable=False, server_default=text("'[]'")),
    Column("indhold_hash", CHAR(64)),
    Column("inspektoer", String(256), nullable=False, server_default=text("ly.actor_subject()")),
    Column("cvr_kode", Integer),
    Column("beliggenhedskommune", Integer),
    Column("position", Geometry("POINT", srid=25832, spatial_index=False)),
    Column("position_tid", DateTime(timezone=True)),
    Column("egnethed_kode", Integer, ForeignKey("ly.d_ly_egnethed.kode")),
    Column("pladser", Integer),
    Column("godkendt_af", String(256)),
    Column("godkendt_tid", DateTime(timezone=True)),
    Column("afvist_begrundelse", String(1000)),
    Column("indberettet_tid", DateTime(timezone=True)),
    Column("beskyttelsesrum_versions_id", UUID(as_uuid=True)),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("oprettet", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("opdateret", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    _template_fk(),
    CheckConstraint("status IN ('planlagt', 'kladde', 'indsendt', 'godkendt', 'afvist', "
                    "'indberettet')"),
    Index("eftersyn_objekt", "objekt_id"),
    Index("eftersyn_kampagne", "kampagne_id", "status"),
)

eftersyn_foto = Table(
    "eftersyn_foto", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("eftersyn_id", UUID(as_uuid=True), ForeignKey("ly.eftersyn.id"), nullable=False),
    Column("punkt", String(64)),
    Column("rum", Integer, CheckConstraint("rum BETWEEN 1 AND 10")),
    Column("content_type", String(40), nullable=False),
    Column("stoerrelse", Integer, nullable=False),
    Column("sha256", CHAR(64), nullable=False),
    Column("bredde", Integer, nullable=False),
    Column("hoejde", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("miniature", LargeBinary, nullable=False),
    Column("oprettet", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("oprettet_af", String(256), nullable=False, server_default=text("ly.actor_subject()")),
    Index("eftersyn_foto_eftersyn", "eftersyn_id"),
)

mangel = Table(
    "mangel", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("eftersyn_id", UUID(as_uuid=True), ForeignKey("ly.eftersyn.id"), nullable=False),
    Column("objekt_id", UUID(as_uuid=True), nullable=False),
    Column("punkt", String(64), nullable=False),
    Column("rum", Integer),
    Column("grad", CHAR(1), CheckConstraint("grad IN ('1', '2', '3', 'S')"), nullable=False),
    Column("kritisk", Boolean, nullable=False, server_default=text("false")),
    Column("beskrivelse", String(500), nullable=False),
    Column("ansvarlig", String(10), CheckConstraint("ansvarlig IN ('kommune', 'ejer')"),
           nullable=False),
    Column("frist", Date, nullable=False),
    Column("status", String(12), nullable=False, server_default=text("'aaben'")),
    Column("cvr_kode", Integer),
    Column("beliggenhedskommune", Integer),
    Column("oprettet", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("opdateret", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("opdateret_af", String(256), nullable=False,
           server_default=text("ly.actor_subject()")),
    CheckConstraint("status IN ('aaben', 'planlagt', 'udbedret', 'verificeret')"),
    Index("mangel_objekt", "objekt_id"),
    Index("mangel_status", "status", "frist"),
)
