"""Settings, read from the environment (prefix LY_, plus DATABASE_URL) or a .env file."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LY_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "postgresql://ly:ly@127.0.0.1:5432/ly",
        validation_alias=AliasChoices("DATABASE_URL", "LY_DATABASE_URL"),
    )
    title: str = "Ly – registret over beskyttelsesrum"
    description: str = (
        "Danmarks register over beskyttelsesrum: GeoFA-kompatibelt (tema 6101), med fuld "
        "historik, som OGC API – Features."
    )
    #: Public URL prefix when behind a proxy (links are otherwise built from the request).
    public_url: str | None = None
    pool_min_size: int = 2
    pool_max_size: int = 10
    default_limit: int = 10
    max_limit: int = 10_000
    #: numberMatched is given only when exact; counting stops after this many matches.
    count_cap: int = 100_000
    max_body_bytes: int = 1_000_000
    #: The editing user recorded in `bruger_id` until authentication is configured.
    default_bruger_id: str = "ly"
