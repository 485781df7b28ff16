"""``/ui`` (the start page), ``/ui/health`` (Nginx and ``fab status``) and ``/ui/static/*``."""

from __future__ import annotations

from fastapi import HTTPException, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from app.ui import assets, render
from app.ui.views.common import ui_router

router = ui_router()


@router.get("")
@router.get("/")
def start() -> Response:
    return RedirectResponse("/ui/reconciliations", status_code=303)


@router.get("/health")
def health(request: Request) -> JSONResponse:
    """Liveness of the UI: templates load and the static files are there. No PostgreSQL, no Redis."""
    render.ENV.get_template("base.html")
    missing = [name for name in (assets.HTMX, "ui.css", "ui.js") if name not in assets.ASSETS]
    settings = request.app.state.services.settings if hasattr(request.app.state, "services") else None
    body = {"status": "ok" if not missing else "broken", "service": "ui", "assets": len(assets.ASSETS),
            "missing": missing, "slot": getattr(settings, "slot", None), "version": getattr(settings, "version", None)}
    return JSONResponse(body, status_code=200 if not missing else 500)


@router.get("/static/{name:path}")
def static(name: str, request: Request) -> Response:
    asset = assets.ASSETS.get(name)
    if asset is None:
        raise HTTPException(404, f"no static file {name!r}")
    cache = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=cache)
    return FileResponse(asset.path, media_type=asset.media_type, headers=cache)
