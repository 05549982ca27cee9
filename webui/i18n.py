"""Every visible string comes from a catalogue: Simplified Chinese (the default) and English.

Catalogues are JSON files in `locales/`, one per language, keyed by message id. Dates, numbers
and money are formatted for the locale with Babel.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path

from babel.dates import format_datetime as babel_datetime
from babel.numbers import format_currency, format_decimal

LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"
_DIR = Path(__file__).parent / "locales"


@cache
def catalogue(locale: str) -> dict[str, str]:
    return json.loads((_DIR / f"{locale}.json").read_text(encoding="utf-8"))


def best_locale(requested: str | None) -> str:
    """The locale to use: the user's explicit choice if we have it, else Chinese. The browser's
    Accept-Language is not consulted: staff browsers are often set to English while the site's
    working language is Chinese, which is the product's default."""
    if requested in LOCALES:
        return requested  # type: ignore[return-value]
    return DEFAULT_LOCALE


class Translator:
    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE
        self._messages = catalogue(self.locale)
        self._babel = self.locale.replace("-", "_")

    def __call__(self, key: str, **values: object) -> str:
        text = self._messages.get(key) or catalogue(DEFAULT_LOCALE).get(key) or key
        return text.format(**values) if values else text

    def datetime(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return babel_datetime(value, "medium", tzinfo="Asia/Shanghai", locale=self._babel)

    def number(self, value: float) -> str:
        return format_decimal(value, locale=self._babel)

    def money(self, cents: int) -> str:
        return format_currency(cents / 100, "CNY", locale=self._babel)
