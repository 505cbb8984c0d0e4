"""Who is acting: Ly's roles, an actor's scope, and the settings that carry it into PostgreSQL.

The rules themselves live in the database (migration 0002: row-level security on every table
with shelters); this module only describes actors. The service builds an `Actor` from a
token or an API key and hands `transaction_settings(actor)` to PostgreSQL at the start of
every transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

PUBLIC = "public"
INSPECTOR = "inspector"
MUNICIPAL_EDITOR = "municipal_editor"
MUNICIPAL_ADMIN = "municipal_admin"
NATIONAL_READER = "national_reader"
NATIONAL_ADMIN = "national_admin"
PLANNER = "planner"
MACHINE = "machine"

ROLES: dict[str, str] = {
    PUBLIC: "Offentligheden (anonym): kun offentlige objekter (off_kode 1) og offentlige "
            "attributter",
    INSPECTOR: "Inspektør (også entreprenør): kun tildelte objekter",
    MUNICIPAL_EDITOR: "Kommunal redaktør: kommunens register",
    MUNICIPAL_ADMIN: "Kommunal administrator: kommunens register, tildelinger og revisionsspor",
    NATIONAL_READER: "National læser (fx SAMS): læser alt",
    NATIONAL_ADMIN: "National administrator: alt, inkl. aktivering",
    PLANNER: "Planlægger: myndighedsniveau (off_kode 1 og 3), uden personoplysninger",
    MACHINE: "Maskinklient (synkronisering) med egne roller og afgrænsning",
}
EDITING_ROLES = frozenset({MUNICIPAL_EDITOR, MUNICIPAL_ADMIN, NATIONAL_ADMIN})
MUNICIPAL_ROLES = frozenset({MUNICIPAL_EDITOR, MUNICIPAL_ADMIN})
ADMIN_ROLES = frozenset({MUNICIPAL_ADMIN, NATIONAL_ADMIN})
#: Roles that read personal data (contact persons, phone numbers), as the database's
#: `ly.actor_reads_personal()` (datamodel/storage.py) decides; the service uses it to refuse a
#: sort on what the caller would only see masked.
PERSONAL_READER_ROLES = frozenset({NATIONAL_READER, NATIONAL_ADMIN, MUNICIPAL_EDITOR,
                                   MUNICIPAL_ADMIN, MACHINE})

#: NSIS assurance levels, lowest first; "system" marks machine clients (API keys).
LEVELS = ("low", "substantial", "high")
WRITE_LEVELS = frozenset({"substantial", "high", "system"})

ANON_DB_ROLE = "ly_anon"
USER_DB_ROLE = "ly_user"


@dataclass(frozen=True)
class Actor:
    subject: str
    roles: frozenset[str] = frozenset()
    cvr: int | None = None
    kommuner: frozenset[int] = frozenset()
    level: str | None = None
    client: str = "api"
    name: str | None = None
    authenticated: bool = True

    @property
    def public(self) -> bool:
        """Sees only the public attributes (and rows)."""
        return not self.authenticated

    @property
    def may_write_level(self) -> bool:
        return self.level in WRITE_LEVELS

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def scope_key(self) -> tuple:
        """Actors with the same key see the same rows."""
        return (self.authenticated, tuple(sorted(self.roles)), self.cvr,
                tuple(sorted(self.kommuner)),
                self.subject if self.has(INSPECTOR) else None)

    def describe(self) -> dict:
        return {"subjekt": self.subject, "navn": self.name, "roller": sorted(self.roles),
                "cvr_kode": self.cvr, "kommuner": sorted(self.kommuner), "niveau": self.level,
                "klient": self.client, "logget_ind": self.authenticated}


ANONYMOUS = Actor(subject="anonym", roles=frozenset({PUBLIC}), authenticated=False,
                  client="api")


def transaction_settings(actor: Actor) -> dict[str, str]:
    """The `role` and `ly.*` settings that make PostgreSQL act for `actor`."""
    return {
        "role": USER_DB_ROLE if actor.authenticated else ANON_DB_ROLE,
        "ly.roller": ",".join(sorted(actor.roles)),
        "ly.kommuner": ",".join(str(k) for k in sorted(actor.kommuner)),
        "ly.cvr": "" if actor.cvr is None else str(actor.cvr),
        "ly.subjekt": actor.subject,
        "ly.klient": actor.client,
        "ly.niveau": actor.level or "",
    }
