"""Every string the workspace and administration templates show exists in both catalogues,
with the same {placeholders} in Chinese and English."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest

WEBUI = Path(__file__).parents[2] / "webui"
TEMPLATES = ["workspace.html", "messages.html", "notice.html", "notices_admin.html", "notice_receipts.html",
             "dictionaries.html", "messaging.html", "bulk_send.html", "visits.html", "visit.html", "surveys.html",
             "survey.html", "backup.html", "base.html"]
# Keys built from enum values in the templates: every value must have its string.
DYNAMIC = {
    "msg.channel.": ["sms", "email"],
    "msg.status.": ["queued", "sent", "failed", "cancelled"],
    "msg.smtp_security.": ["none", "starttls", "tls"],
    "visits.reason.": ["order", "work_order", "campaign", "manual"],
    "visits.status.": ["open", "done", "cancelled"],
    "visits.outcome.": ["reached", "unreachable", "refused"],
    "surveys.status.": ["draft", "active", "closed"],
    "surveys.kind.": ["scale5", "scale10", "choice", "multi_choice", "text"],
    "dict.name.": ["customer_type", "relationship_level", "ticket_category", "source_channel"],
}


def _catalogue(locale: str) -> dict[str, str]:
    return json.loads((WEBUI / "locales" / f"{locale}.json").read_text(encoding="utf-8"))


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for name in TEMPLATES:
        text = (WEBUI / "templates" / name).read_text(encoding="utf-8")
        keys |= {k for k in re.findall(r"""\bt\(\s*["']([a-z0-9_.-]+)["']""", text) if not k.endswith(".")}
    for prefix, values in DYNAMIC.items():
        keys |= {prefix + v for v in values}
    return keys


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


@pytest.mark.parametrize("key", sorted(_used_keys()))
def test_the_key_is_in_both_languages_with_the_same_placeholders(key: str) -> None:
    zh, en = _catalogue("zh-CN"), _catalogue("en")
    assert key in zh and key in en, key
    assert _fields(zh[key]) == _fields(en[key]), key
