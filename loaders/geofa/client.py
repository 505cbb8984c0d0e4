"""A client for GeoFA's SQL API v4 and WFS, as GeoFA documents them
(GeoDanmarkGeoFA/Dokumentation `api.md`; reference/geofa-fkg.md §5):

- `POST /api/v4/oauth` with the password grant (`database` "fkg") gives a bearer token valid one
  hour and a refresh token; the client refreshes before the token runs out;
- `POST /api/v4/sql` takes `q` with `:name` parameters, `params` (one object, or a list for one
  transaction of many) and `srs`; selects answer GeoJSON, writes `affected_rows` (and the
  `returning` rows); a write that changes nothing is a `COUNT 0` error, a rule violation a
  `LIMIT` error (nothing written);
- WFS `GetFeature` on `/ows/fkg/fkg` (anonymous) with a theme's `typeName` (for shelters
  `fkg:fkg.t_6101_beskyt_rum`), GeoJSON output, `count`/`startIndex` paging.

The tests point it at the stand-in (`loaders.geofa.standin`); never at the real GeoFA.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from loaders.staging import RunError


class GeoFAError(RunError):
    """GeoFA refused a request; `code` is GeoFA's (LIMIT, COUNT0, …) when it gave one."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.status = code, status


class CountZero(GeoFAError):
    """An update or delete changed nothing: the object is gone, has changed, or is not ours."""


class LimitError(GeoFAError):
    """The write breaks the user's rules; nothing was written."""


class GeoFAClient:
    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 *, database: str = "fkg", client_id: str = "geofa",
                 client: httpx.Client | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.database, self.client_id = database, client_id
        self.http = client or httpx.Client(timeout=timeout)
        self._token: str | None = None
        self._refresh: str | None = None
        self._expires = 0.0

    # --- authentication ---
    def login(self) -> None:
        if not self.username:
            raise GeoFAError("GeoFA: a user name and password are needed to log in")
        self._oauth({"grant_type": "password", "username": self.username,
                     "password": self.password, "database": self.database,
                     "client_id": self.client_id})

    def _oauth(self, body: dict) -> None:
        r = self._post("/api/v4/oauth", body, auth=False)
        self._token, self._refresh = r["access_token"], r.get("refresh_token")
        self._expires = time.monotonic() + float(r.get("expires_in", 3600))

    def _headers(self, auth: bool) -> dict:
        headers = {"Accept": "application/json; charset=utf-8"}
        if auth:
            if self._token is None:
                self.login()
            elif time.monotonic() > self._expires - 60:
                try:
                    self._oauth({"grant_type": "refresh_token", "refresh_token": self._refresh,
                                 "database": self.database, "client_id": self.client_id})
                except GeoFAError:
                    self.login()
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _post(self, path: str, body: dict, auth: bool = True) -> dict:
        try:
            r = self.http.post(self.base_url + path, json=body, headers=self._headers(auth))
        except httpx.HTTPError as exc:
            raise GeoFAError(f"GeoFA {path}: no answer ({exc})") from None
        try:
            payload = r.json()
        except ValueError:
            raise GeoFAError(f"GeoFA {path}: answered {r.status_code} without JSON",
                             status=r.status_code) from None
        if r.status_code >= 400 or payload.get("success") is False:
            message = payload.get("message") or payload.get("error_description") or str(payload)
            code = payload.get("code") or payload.get("error")
            kind = CountZero if code == "COUNT0" or "COUNT 0" in message else \
                LimitError if code == "LIMIT" else GeoFAError
            raise kind(f"GeoFA {path}: {message}", code, r.status_code)
        return payload

    # --- SQL API ---
    def sql(self, q: str, params: dict | list[dict] | None = None, srs: int = 25832,
            anonymous: bool = False) -> dict:
        body: dict[str, Any] = {"q": q, "srs": srs}
        if params is not None:
            body["params"] = params
        path = "/api/v4/sql/database/fkg" if anonymous else "/api/v4/sql"
        return self._post(path, body, auth=not anonymous)

    def select(self, q: str, params: dict | None = None, srs: int = 25832,
               anonymous: bool = False) -> list[dict]:
        return self.sql(q, params, srs, anonymous).get("features") or []

    # --- WFS ---
    def wfs_features(self, type_name: str, srs: int = 25832,
                     page_size: int = 1000) -> list[dict]:
        """Every feature of a feature type (`fkg:fkg.<theme's GeoFA view>`) the anonymous WFS
        serves (GeoJSON, paged with count/startIndex)."""
        out: list[dict] = []
        start = 0
        while True:
            params = {"service": "WFS", "version": "2.0.0", "request": "GetFeature",
                      "typeName": type_name, "outputFormat": "application/json",
                      "srsName": f"EPSG:{srs}", "count": page_size, "startIndex": start}
            try:
                r = self.http.get(self.base_url + "/ows/fkg/fkg", params=params)
            except httpx.HTTPError as exc:
                raise GeoFAError(f"GeoFA WFS: no answer ({exc})") from None
            if r.status_code != 200:
                raise GeoFAError(f"GeoFA WFS: answered {r.status_code} {r.text[:200]}",
                                 status=r.status_code)
            page = r.json().get("features") or []
            out += page
            if len(page) < page_size:
                return out
            start += page_size
