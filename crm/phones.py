"""Phone numbers as the CRM stores and matches them: E.164, parsed with `phonenumbers`.

Agents type numbers every way (`+86 138 0013 8000`, `008613800138000`, `138-0013-8000`,
`(021)12345678`), and trunks present caller ID every way too (`013800138000` for an out-of-area
mobile, `8613800138000`, or a local landline without its area code). All of them reduce to one
E.164 string, the key of `member_phones`, so the caller-ID look-up is one index probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from crm.errors import ValidationError

DEFAULT_REGION = "CN"
#: Longer input is not a phone number; phonenumbers itself refuses more than 250 characters.
MAX_RAW_LENGTH = 64
#: Chinese local landline subscriber numbers are 7 or 8 digits (after the area code).
_LOCAL_SUBSCRIBER_LENGTHS = (7, 8)


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    OTHER = "other"


@dataclass(frozen=True)
class Phone:
    e164: str
    kind: PhoneKind
    #: As the user typed it, for display and for forensics when normalisation rules change.
    raw: str
    is_primary: bool = False

    @property
    def national(self) -> str:
        """Human form in the number's own country, e.g. `138 0013 8000`, `010 6552 9988`."""
        return format_national(self.e164)


_KINDS = {
    PhoneNumberType.MOBILE: PhoneKind.MOBILE,
    PhoneNumberType.FIXED_LINE: PhoneKind.LANDLINE,
}


class PhoneNormaliser:
    """Turns typed numbers and caller IDs into E.164 for one site.

    `region` is the country assumed for numbers without an international prefix. `local_area_code`
    (e.g. "21" for Shanghai) completes local landline caller IDs that PSTN trunks deliver without
    their area code.
    """

    def __init__(self, region: str = DEFAULT_REGION, local_area_code: str | None = None) -> None:
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {region!r}")
        if local_area_code is not None and not local_area_code.isdigit():
            raise ValueError(f"area code must be digits, not {local_area_code!r}")
        self.region = region
        self.local_area_code = local_area_code

    def normalise(self, raw: str, *, field: str = "phone") -> Phone:
        """A valid number in E.164 with its kind, or ValidationError naming `field`."""
        number = self._parse(raw)
        if number is None or not phonenumbers.is_valid_number(number):
            raise ValidationError(field, f"{raw!r} is not a valid phone number", code="phone.invalid")
        kind = _KINDS.get(phonenumbers.number_type(number), PhoneKind.OTHER)
        return Phone(phonenumbers.format_number(number, PhoneNumberFormat.E164), kind, raw.strip())

    def lookup_key(self, raw: str) -> str | None:
        """E.164 of a caller ID or search input, or None when it cannot be anybody's number
        (internal extensions, `anonymous`, garbage): then nothing needs to be looked up."""
        number = self._parse(raw)
        if number is None or not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)

    def _parse(self, raw: str) -> phonenumbers.PhoneNumber | None:
        text = _strip_uri(raw)
        if not text or len(text) > MAX_RAW_LENGTH:
            return None
        try:
            number = phonenumbers.parse(text, self.region)
        except NumberParseException:
            return None
        if phonenumbers.is_valid_number(number) or self.local_area_code is None:
            return number
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) in _LOCAL_SUBSCRIBER_LENGTHS and not text.lstrip().startswith("+"):
            try:
                return phonenumbers.parse(f"0{self.local_area_code}{digits}", self.region)
            except NumberParseException:
                return None
        return number


def _strip_uri(raw: str) -> str:
    """The user part of `sip:13800138000@host;user=phone` or `tel:+86...`; plain text unchanged."""
    text = raw.strip()
    lowered = text.lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    text = text.split("@", 1)[0]
    return text.split(";", 1)[0].strip()


def format_national(e164: str) -> str:
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, None), PhoneNumberFormat.NATIONAL)
    except NumberParseException:
        return e164
