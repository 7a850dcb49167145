"""The CRM's CSS and JavaScript are linked with their content's version: a release that
changes them changes their URL, so no browser keeps running yesterday's script."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask.testing import FlaskClient

STATIC = Path(__file__).resolve().parents[3] / "services" / "crm-ui" / "static"


def test_css_and_js_are_linked_with_their_contents_version(crm_client: FlaskClient) -> None:
    page = crm_client.get("/login").get_data(as_text=True)
    for name in ("app.css", "app.js"):
        version = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
        url = f"/static/{name}?v={version}"
        assert f'"{url}"' in page, name
        served = crm_client.get(url)
        assert served.status_code == 200 and served.data == (STATIC / name).read_bytes()
