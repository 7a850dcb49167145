"""Hebrew first, English available: message ids are English, Hebrew is the default.

The language comes from the `lang` cookie (set by the switcher), else the user's saved
preference, else Hebrew. Templates call `_("...")`; a test checks every id has Hebrew.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request
from flask_login import current_user

from crm_ui.messages import HEBREW

LANGUAGES = {"he": ("עברית", "rtl"), "en": ("English", "ltr")}
DEFAULT_LANGUAGE = "he"
COOKIE = "moked_lang"


def current_language() -> str:
    cached: str | None = g.get("lang")
    if cached:
        return cached
    lang = request.cookies.get(COOKIE, "")
    if lang not in LANGUAGES:
        user_lang = getattr(current_user, "language", None) if current_user else None
        lang = user_lang if user_lang in LANGUAGES else DEFAULT_LANGUAGE
    g.lang = lang
    return lang


def gettext(message: str, **values: Any) -> str:
    text = HEBREW.get(message, message) if current_language() == "he" else message
    return text.format(**values) if values else text


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(_=gettext, LANGUAGES=LANGUAGES)

    @app.context_processor
    def _language() -> dict[str, Any]:
        lang = current_language()
        return {"lang": lang, "direction": LANGUAGES[lang][1]}
