"""The register's tables as SQLAlchemy Core metadata (GeoAlchemy2 for geometry).

The migrations are the source of truth for the database; this module describes the same
tables for code that wants typed table objects (loaders, exports) and is checked against a
migrated database in the tests (`alembic` autogenerate finds no difference). Each theme's
base table is made from its descriptor (`datamodel.themes`), as `datamodel.storage` creates
it; the code-list tables are every theme's lists and every list Ly ships.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, Date, DateTime, ForeignKey,
                        ForeignKeyConstraint, Index, Integer, LargeBinary, MetaData, Numeric,
                        SmallInteger, String, Table, Text, text)
from sqlalchemy.dialects.postgresql import ARRAY, CHAR, JSONB, UUID

from datamodel import checklist, storage, themes
from datamodel.codelists import load_codelists
from datamodel.fields import Field
from datamodel.themes import Theme

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


#: Every code list's table: each theme's lists and every list Ly ships (the migrations make
#: a table for each; `d_basis_ansvarlig_myndighed` also has the authority's municipality).
CODELIST_TABLES = {
    name: _codelist(name) if name != "d_basis_ansvarlig_myndighed"
    else _codelist(name, Column("kommunekode", Integer))
    for name in sorted({c for t in themes.all_themes() for c in t.codelists}
                       | set(load_codelists()))
}

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


# --- every theme's base table, from its descriptor (as datamodel.storage makes it) ---

def _type(f: Field):
    if f.type == "string":
        return String(f.max_length) if f.max_length else Text()
    return {"integer": Integer, "number": Numeric, "date": Date,
            "date-time": lambda: DateTime(timezone=True), "uuid": lambda: UUID(as_uuid=True),
            "boolean": Boolean}[f.type]()


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _range(f: Field) -> CheckConstraint | None:
    """The attribute's range check, as `storage.column_definition` writes it."""
    if f.minimum is not None and f.maximum is not None:
        rule = f"{f.name} BETWEEN {_num(f.minimum)} AND {_num(f.maximum)}"
    elif f.minimum is not None:
        rule = f"{f.name} >= {_num(f.minimum)}"
    elif f.maximum is not None:
        rule = f"{f.name} <= {_num(f.maximum)}"
    else:
        return None
    return CheckConstraint(rule, name=f"{f.name}_range")


def _column(f: Field) -> Column:
    definition = storage.column_definition(f)
    args: list = [_type(f)]
    if f.codelist:
        args.append(ForeignKey(f"{SCHEMA}.{f.codelist}.kode"))
    check = _range(f)
    if check is not None:
        args.append(check)
    kw: dict = {"primary_key": "PRIMARY KEY" in definition,
                "nullable": "NOT NULL" not in definition and "PRIMARY KEY" not in definition}
    if " DEFAULT " in definition:
        kw["server_default"] = text(definition.split(" DEFAULT ")[1].split()[0])
    return Column(f.name, *args, **kw)


def theme_table(theme: Theme) -> Table:
    """Every version of every object of a theme (GeoFA: fkg.generel joined with the theme's
    table): the columns, keys, checks and indexes `datamodel.storage.table_sql` creates."""
    t = theme.table
    extra: list = []
    if theme.validity:
        start, end = theme.validity
        extra += [CheckConstraint(f"{end} IS NULL OR {end} >= {start}", name=f"{end}_range"),
                  Index(f"{t}_gyldig", start, end, postgresql_where=text("systid_til IS NULL"))]
    return Table(
        t, metadata,
        *(_column(theme.fields_by_name[c]) for c in theme.storage_columns),
        Column("geometri", Geometry(theme.geometry_type.upper(), srid=theme.srid,
                                    spatial_index=False),
               CheckConstraint("NOT ST_IsEmpty(geometri)", name="geometri_valid"),
               nullable=False),
        CheckConstraint("systid_til IS NULL OR systid_til >= systid_fra", name="systid_order"),
        Index(f"{t}_aktuel_uk", "objekt_id", unique=True,
              postgresql_where=text("systid_til IS NULL")),
        Index(f"{t}_historik", "objekt_id", "systid_fra"),
        Index(f"{t}_aktuel_gist", "geometri", postgresql_using="gist",
              postgresql_where=text("systid_til IS NULL")),
        Index(f"{t}_gist", "geometri", postgresql_using="gist"),
        Index(f"{t}_systid", "systid_fra", "systid_til"),
        *extra,
    )


#: Each theme's base table by table name (the column order is storage order; an older
#: theme's physical table may order its columns otherwise, which nothing depends on).
THEME_TABLES = {t.table: theme_table(t) for t in themes.all_themes()}

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

#: Which inspector (subject) may see which object (of an assignable theme).
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
    *(Column(name, Integer, *([ForeignKey(f"{SCHEMA}.{codelist}.kode")] if codelist else []))
      for name, codelist in checklist.ASSESSMENT_COLUMNS),
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
