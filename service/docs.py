"""The API's documentation pages, both from /static/vendor (no CDN, nothing from outside Ly):
Swagger UI at `/docs` (try the operations) and ReDoc at `/redoc` (read the reference).

Both load Ly's `/openapi.json` and nothing else: Swagger UI without its validator badge
(`validatorUrl: null`, it would load an image from validator.swagger.io), ReDoc without
Google's fonts (its usual page links them; Ly's page names none, so the browser's own sans
serif is used) and with its styles under the response's nonce (`nonce` in ReDoc's options,
from the nonce of the script that starts it). ReDoc's search runs in a web worker it makes
from a blob: the Content-Security-Policy of `/redoc` alone allows `worker-src blob:`
(service/edge.py, REDOC_PATH).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.http import html_response

router = APIRouter()


@router.get("/docs", include_in_schema=False)
async def docs(request: Request):
    # Swagger UI from /static/vendor (no CDN), started by a script file (no inline script).
    return html_response(request, "docs.html")


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request):
    # ReDoc from /static/vendor, started by ly-redoc.js (no inline script).
    return html_response(request, "redoc.html")
