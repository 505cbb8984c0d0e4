"""The API's documentation pages: Swagger UI at `/docs`, from /static/vendor (no CDN)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.http import html_response

router = APIRouter()


@router.get("/docs", include_in_schema=False)
async def docs(request: Request):
    # Swagger UI from /static/vendor (no CDN), started by a script file (no inline script).
    return html_response(request, "docs.html")
