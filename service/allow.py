"""Which methods a path has (RFC 9110 9.3.7 OPTIONS, 15.5.6 405 Allow), from the app's routes.

One answer for every path: `allowed_methods` is the union of the methods of every route whose
path matches (a path may match several: `/eftersyn/opgaver` is also `/eftersyn/{eftersyn_id}`),
and OPTIONS; `router` answers OPTIONS on every path with it, and the 405 problem
(`service.errors`) carries it as Allow.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import Match, Mount, compile_path
from starlette.responses import Response

from service.errors import not_found

try:  # FastAPI >= 0.120 keeps included routers as such; this flattens them
    from fastapi.routing import iter_route_contexts as _route_contexts
except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
    def _route_contexts(routes):
        return iter(routes)



class _OptionsOnly(APIRoute):
    """A route that exists for OPTIONS only: to any other method it does not match at all
    (a plain route would match its path "partially" and answer 405), so the router's own
    handling of the other methods stays as it is (the 405s of the real routes, the
    trailing-slash redirect)."""

    def matches(self, scope):
        if scope.get("method") != "OPTIONS":
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(route_class=_OptionsOnly)

#: Methods in the order Allow lists them.
_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: What StaticFiles (the /static mount) serves.
_STATIC = frozenset({"GET", "HEAD"})


def _table(app: FastAPI) -> list[tuple[re.Pattern, frozenset[str]]]:
    """(path pattern, methods) of every route of the app, compiled once per app."""
    cached = getattr(app.state, "allow_table", None)
    if cached is not None:
        return cached
    table = []
    for route in _route_contexts(app.routes):
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", None)
        if path is None or getattr(route, "endpoint", None) is options:
            continue
        if isinstance(original, Mount):
            table.append((re.compile("^" + re.escape(path.rstrip("/")) + "/.*$"), _STATIC))
            continue
        methods = getattr(route, "methods", None)
        if methods:
            table.append((compile_path(path)[0], frozenset(methods)))
    app.state.allow_table = table
    return table


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """The methods the app routes for `path` (with OPTIONS), in a fixed order; None when no
    route has the path."""
    found: set[str] = set()
    for pattern, methods in _table(app):
        if pattern.match(path):
            found |= methods
    if not found:
        return None
    found.add("OPTIONS")
    return sorted(found, key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))


def route_path(request: Request) -> str:
    """The request's path as the app's routes see it (without the app's root path; inside a
    mount the scope's root path is the mount's)."""
    scope = request.scope
    path, root = scope["path"], scope.get("app_root_path", scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


def header(request: Request) -> str | None:
    """The Allow header of the request's path, or None when no route has it."""
    methods = allowed_methods(request.app, route_path(request))
    return ", ".join(methods) if methods else None


@router.options("/{path:path}", include_in_schema=False)
async def options(request: Request, path: str) -> Response:
    """Every path's OPTIONS: 200 with Allow, or 404 for a path the API does not have."""
    allow = header(request)
    if allow is None:
        raise not_found(f"Stien {route_path(request)}")
    return Response(status_code=200, headers={"Allow": allow})
