"""Settings, read from the environment (prefix LY_, plus DATABASE_URL) or a .env file."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: A list setting from the environment: a JSON list or comma-separated words.
Words = Annotated[list[str], NoDecode]


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

    # --- the edge (service/edge.py) ---
    #: Host names the service answers to (the Host header, or X-Forwarded-Host from a trusted
    #: proxy); any other is refused with a 400 problem. LY_PUBLIC_URL's host is always one of
    #: them. "*" admits any host, "*.example.dk" any subdomain.
    allowed_hosts: Words = ["localhost", "127.0.0.1", "::1", "testserver"]
    #: Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For, -Proto and -Host
    #: are honoured; from any other peer those headers are ignored.
    trusted_proxies: Words = []
    #: Requests per minute: per client address without credentials, per credential when
    #: signed in, and refused credentials (401) per client address, after which requests with
    #: credentials from that address get 429 until the minute is over. 0: no limit.
    rate_limit_anonymous: int = Field(1200, ge=0)
    rate_limit_signed_in: int = Field(6000, ge=0)
    rate_limit_bad_token: int = Field(30, ge=0)
    #: Origins whose web pages may read the API cross-origin (CORS): anonymous GET/HEAD only,
    #: never with credentials. "*" (the default): any origin, as suits open data; empty: none.
    cors_origins: Words = ["*"]

    # --- maps (/kort) ---
    #: Basemap of the map pages: OpenStreetMap, Dataforsyningen's skærmkort (needs a token),
    #: or none. The pages work without any basemap reachable.
    basemap: Literal["osm", "dataforsyningen", "none"] = "osm"
    dataforsyningen_token: str | None = None
    #: Most shelters one map page embeds; above it the page says so (vector tiles later).
    map_max_features: int = 20_000

    @field_validator("allowed_hosts", "trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _words(cls, value):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [w.strip() for w in text.split(",") if w.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"LY_TRUSTED_PROXIES: {item!r} is not an address or a CIDR "
                                 "network") from None
        return value

    @property
    def hosts(self) -> frozenset[str]:
        """The allowed host names (lower case), LY_PUBLIC_URL's host included."""
        out = {h.strip().lower() for h in self.allowed_hosts if h.strip()}
        if self.public_url:
            host = urlsplit(self.public_url).hostname
            if host:
                out.add(host.lower())
        return frozenset(out)

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
