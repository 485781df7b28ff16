"""Static files of the UI (``app/ui/static``): our CSS and JS, and the vendored htmx and axe-core.

Every file is listed once at import, with its content type and a short content hash. Pages link
``/ui/static/<path>?v=<hash>`` so a new release's file is fetched at once while unchanged files
stay cached for a year. Serving is a dictionary look-up, never a path join with user input, so
``/ui/static/../../settings.py`` cannot name a file outside the directory.

Vendored files (``static/vendor``) carry their version in the name and sit next to their licence;
``static/vendor/README.md`` says where each came from and its checksum.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"

HTMX = "vendor/htmx-2.0.11.min.js"
AXE = "vendor/axe-core-4.14.1.min.js"

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    path: Path
    media_type: str
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


def _scan(root: Path) -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        media = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        found[rel] = Asset(path, media, hashlib.sha256(path.read_bytes()).hexdigest()[:12])
    return found


ASSETS: dict[str, Asset] = _scan(STATIC_DIR)


def url(name: str) -> str:
    """``/ui/static/<name>?v=<hash>``; a name that is not a file under static/ is a bug (KeyError)."""
    asset = ASSETS.get(name)
    if asset is None:
        raise KeyError(f"no static file {name!r} under {STATIC_DIR}; known: {', '.join(sorted(ASSETS))}")
    return f"/ui/static/{name}?v={asset.digest}"
