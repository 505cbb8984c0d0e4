"""Settings, read from the environment (prefix LY_, plus DATABASE_URL) or a .env file."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _registry_description() -> str:
    from datamodel import themes

    listed = ", ".join(f"{t.title.lower()} (tema {t.temakode})" for t in themes.all_themes())
    return (f"Danmarks register over beredskabets objekter: {listed}. GeoFA-kompatibelt, med "
            "fuld historik, som OGC API – Features.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LY_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "postgresql://ly:ly@127.0.0.1:5432/ly",
        validation_alias=AliasChoices("DATABASE_URL", "LY_DATABASE_URL"),
    )
    title: str = "Ly – Danmarks register over beskyttelse og beredskab"
    description: str = Field(default_factory=lambda: _registry_description())
    #: Public URL prefix when behind a proxy (links are otherwise built from the request).
    public_url: str | None = None
    pool_min_size: int = 2
    pool_max_size: int = 10
    default_limit: int = 10
    max_limit: int = 10_000
    #: numberMatched is given only when exact; counting stops after this many matches.
    count_cap: int = 10_000
    #: A vector tile with more shelters than this holds clusters (count, places) instead.
    tile_max_points: int = 10_000
    max_body_bytes: int = 1_000_000
    #: Vertices of one written area (6121) or one CQL2 filter geometry (LY_MAX_VERTICES).
    max_vertices: int = 10_000

    # --- authentication ---
    #: "production" refuses development keys and requires an identity broker for sign-in.
    environment: Literal["development", "production"] = "development"
    #: OIDC identity broker: issuer, audience, and its JWKS (URL, or a local file of keys).
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_jwks_file: str | None = None
    #: Claim names after the broker's mapping.
    claim_cvr: str = "cvr"
    claim_kommunekode: str = "kommunekode"
    claim_roles: str = "roles"
    claim_level: str = "loa"
    claim_name: str = "name"
    #: A locally generated key (`ly dev-key`) that signs development tokens (`ly dev-token`).
    dev_key_file: str | None = None
    dev_issuer: str = "ly-dev"
    dev_audience: str = "ly"

    # --- maps (/kort) ---
    #: Basemap of the map pages: OpenStreetMap, Dataforsyningen's skærmkort (needs a token),
    #: or none. The pages work without any basemap reachable.
    basemap: Literal["osm", "dataforsyningen", "none"] = "osm"
    dataforsyningen_token: str | None = None
    #: Most shelters one map page embeds; above it the page says so (vector tiles later).
    map_max_features: int = 20_000

    @model_validator(mode="after")
    def _production_refuses_dev_keys(self):
        if self.environment == "production" and self.dev_key_file:
            raise ValueError("a production configuration refuses development keys "
                             "(unset LY_DEV_KEY_FILE)")
        if self.oidc_issuer and not (self.oidc_jwks_url or self.oidc_jwks_file):
            raise ValueError("LY_OIDC_ISSUER needs LY_OIDC_JWKS_URL or LY_OIDC_JWKS_FILE")
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("LY_OIDC_ISSUER needs LY_OIDC_AUDIENCE")
        if self.basemap == "dataforsyningen" and not self.dataforsyningen_token:
            raise ValueError("LY_BASEMAP=dataforsyningen needs LY_DATAFORSYNINGEN_TOKEN")
        return self
