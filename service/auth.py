"""Authentication: OIDC/JWT bearer tokens from an identity broker, API keys for machine
clients, and development tokens signed by a locally generated key.

A request without credentials acts as the public. Credentials that do not verify are
refused with 401, whatever the resource: a client that meant to sign in must learn it did not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jwt
from fastapi import Request
from jwt import PyJWKClient, PyJWKSet

from datamodel.access import ANONYMOUS, LEVELS, MACHINE, MUNICIPAL_ROLES, ROLES, Actor
from service.errors import Problem
from service.settings import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
API_KEY_HEADER = "x-api-key"
TOKEN_COOKIE = "ly_token"


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, kind="unauthorized",
                   errors=[{"field": "Authorization", "detail": detail}],
                   headers={"WWW-Authenticate": 'Bearer realm="ly"'})


def forbidden(detail: str, field: str = "Authorization") -> Problem:
    return Problem(403, detail, kind="forbidden", errors=[{"field": field, "detail": detail}])


@dataclass(frozen=True)
class Issuer:
    issuer: str
    audience: str
    keys: object  # PyJWKSet or PyJWKClient
    client: str

    def key_for(self, token: str):
        if isinstance(self.keys, PyJWKClient):
            return self.keys.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self.keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError("no key of the issuer matches the token's kid")


def dev_public_jwks(private_key_file: str) -> dict:
    """The JWKS (public part) of the development key."""
    from cryptography.hazmat.primitives import serialization

    pem = Path(private_key_file).read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": "ly-dev", "use": "sig", "alg": "RS256"})
    return {"keys": [jwk]}


def build_issuers(settings: Settings) -> dict[str, Issuer]:
    issuers: dict[str, Issuer] = {}
    if settings.oidc_issuer:
        if settings.oidc_jwks_file:
            keys = PyJWKSet.from_json(Path(settings.oidc_jwks_file).read_text())
        else:
            keys = PyJWKClient(settings.oidc_jwks_url, cache_keys=True, lifespan=3600)
        issuers[settings.oidc_issuer] = Issuer(settings.oidc_issuer, settings.oidc_audience,
                                               keys, "oidc")
    if settings.dev_key_file and settings.environment != "production":
        keys = PyJWKSet.from_dict(dev_public_jwks(settings.dev_key_file))
        issuers[settings.dev_issuer] = Issuer(settings.dev_issuer, settings.dev_audience, keys,
                                              "dev")
    return issuers


def _roles(value) -> frozenset[str]:
    """Ly roles from a roles claim: names, or URIs whose last segment is a role name."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        return frozenset()
    out = set()
    for item in value:
        name = str(item).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        if name in ROLES:
            out.add(name)
    return frozenset(out)


def _level(value) -> str | None:
    """NSIS level from a claim: "substantial", or a URI ending in it (…/loa/Substantial)."""
    if not isinstance(value, str):
        return None
    name = value.rstrip("/").rsplit("/", 1)[-1].lower()
    return name if name in LEVELS else None


def _kommuner(value) -> frozenset[int]:
    values = value if isinstance(value, list) else [value]
    out = set()
    for v in values:
        try:
            out.add(int(v))
        except (TypeError, ValueError):
            raise unauthorized("the kommunekode claim is not a municipality code") from None
    return frozenset(out)


def actor_from_claims(claims: dict, settings: Settings, client: str) -> Actor:
    subject = claims.get("sub")
    roles = _roles(claims.get(settings.claim_roles))
    if not subject or not roles:
        raise unauthorized("the token lacks a subject (sub) or any Ly role "
                           f"({settings.claim_roles})")
    cvr = claims.get(settings.claim_cvr)
    try:
        cvr = int(cvr) if cvr is not None else None
    except (TypeError, ValueError):
        raise unauthorized("the cvr claim is not a CVR number") from None
    kommuner = _kommuner(claims[settings.claim_kommunekode]) \
        if claims.get(settings.claim_kommunekode) is not None else frozenset()
    if roles & MUNICIPAL_ROLES and (cvr is None or not kommuner):
        raise unauthorized("a municipal role needs the cvr and kommunekode claims")
    return Actor(subject=str(subject), roles=roles, cvr=cvr, kommuner=kommuner,
                 level=_level(claims.get(settings.claim_level)), client=client,
                 name=claims.get(settings.claim_name))


def verify_token(token: str, issuers: dict[str, Issuer], settings: Settings) -> Actor:
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise unauthorized("the bearer token is not a JWT") from None
    issuer = issuers.get(unverified.get("iss"))
    if issuer is None:
        raise unauthorized("the token's issuer is not trusted here")
    try:
        claims = jwt.decode(token, issuer.key_for(token), algorithms=ALGORITHMS,
                            audience=issuer.audience, issuer=issuer.issuer, leeway=30,
                            options={"require": ["exp", "iss", "aud", "sub"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("the token has expired") from None
    except jwt.InvalidAudienceError:
        raise unauthorized("the token is not meant for this API (audience)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise unauthorized(f"the token lacks the {exc.claim} claim") from None
    except jwt.InvalidSignatureError:
        raise unauthorized("the token's signature does not verify") from None
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        raise unauthorized(f"the token is not valid: {exc}") from None
    return actor_from_claims(claims, settings, issuer.client)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _api_key_actor(request: Request, key: str) -> Actor:
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT navn, roller, cvr_kode, kommuner FROM ly.api_noegle "
            "WHERE hash = %s AND aktiv", [hash_api_key(key)])
        row = await cur.fetchone()
    if row is None:
        raise unauthorized("the API key is not valid")
    navn, roller, cvr, kommuner = row
    return Actor(subject=f"api:{navn}", roles=frozenset(roller) | {MACHINE}, cvr=cvr,
                 kommuner=frozenset(kommuner), level="system", client=f"api-key:{navn}",
                 name=navn)


async def current_actor(request: Request) -> Actor:
    """The actor of a request (cached on it)."""
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    actor = await _authenticate(request)
    request.state.actor = actor
    return actor


async def _authenticate(request: Request) -> Actor:
    settings = request.app.state.settings
    header = request.headers.get("authorization")
    key = request.headers.get(API_KEY_HEADER)
    if header and key:
        raise unauthorized("send either a bearer token or an API key, not both")
    if key:
        return await _api_key_actor(request, key)
    token = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Authorization must be 'Bearer <token>'")
    elif request.method in ("GET", "HEAD"):
        # The HTML pages may carry the token in a cookie; never for writes (CSRF).
        token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        return ANONYMOUS
    return verify_token(token.strip(), request.app.state.issuers, settings)
