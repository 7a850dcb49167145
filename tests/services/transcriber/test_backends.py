"""Choosing the backend and the language."""

from __future__ import annotations

import pytest

from moked.settings import TranscriberBackend, load_settings
from transcriber.backends import whisper_language


@pytest.mark.parametrize(
    ("business", "whisper"),
    [("he-IL", "he"), ("iw-IL", "he"), ("en-US", "en"), ("ar", "ar"), ("", "he"), (None, "he")],
)
def test_business_language_as_whisper_code(business: str | None, whisper: str):
    assert whisper_language(business) == whisper


def test_auto_is_openai_with_a_key_else_local():
    assert load_settings(openai_api_key="").effective_backend is TranscriberBackend.LOCAL
    assert load_settings(openai_api_key="sk-x").effective_backend is TranscriberBackend.OPENAI
    forced = load_settings(openai_api_key="sk-x", transcriber_backend="local")
    assert forced.effective_backend is TranscriberBackend.LOCAL
