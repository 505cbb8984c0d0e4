"""The application factory."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from service import (admin, allow, campaigns, docs, edge, errors, features, inspections, maps,
                     ogc, openapi, planning, reports, runs, tiles, transactions)
from service import nearest
from service.auth import build_issuers, current_actor
from service.db import make_pool
from service.http import OPENAPI_JSON, json_response
from service.settings import Settings


class _Ly(FastAPI):
    """FastAPI with the edge (service/edge.py) around its whole middleware stack, error
    handling included, so every response, a 500 too, passes through it."""

    def build_middleware_stack(self):
        return edge.wrap(super().build_middleware_stack(), self)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    pool = make_pool(settings.database_url, settings.pool_min_size, settings.pool_max_size)
    counters = edge.make_counter_pool(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open(wait=True, timeout=30)
        if counters is not None:
            await counters.open(wait=False)
        try:
            yield
        finally:
            if counters is not None:
                await counters.close()
            await pool.close()

    # Every request is authenticated first: no credentials means the public; credentials that
    # do not verify are a 401 on any resource.
    app = _Ly(title=settings.title, description=settings.description, version="0.1.0",
              openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan,
              dependencies=[Depends(current_actor)])
    app.state.settings = settings
    app.state.pool = pool
    app.state.counter_pool = counters
    app.state.issuers = build_issuers(settings)
    app.state.extent_cache = {}
    errors.install(app)
    app.include_router(ogc.router)
    app.include_router(features.router)
    app.include_router(nearest.router)
    app.include_router(tiles.router)
    app.include_router(transactions.router)
    app.include_router(admin.router)
    app.include_router(runs.router)
    app.include_router(maps.router)
    app.include_router(reports.router)
    app.include_router(inspections.router)
    app.include_router(campaigns.router)
    app.include_router(planning.router)
    app.include_router(docs.router)
    # OPTIONS on every path (and Allow on a 405): after every router, before /static.
    app.include_router(allow.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request):
        if not hasattr(app.state, "openapi_doc"):
            app.state.openapi_doc = openapi.build(app)
        return json_response(app.state.openapi_doc, media_type=OPENAPI_JSON)

    return app
