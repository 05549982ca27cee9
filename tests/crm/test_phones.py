"""Every way a Chinese number is typed or presented as caller ID reduces to one E.164 key."""

from __future__ import annotations

import pytest

from crm.errors import ValidationError
from crm.phones import PhoneKind, PhoneNormaliser


@pytest.mark.parametrize(
    "typed",
    ["+86 138 0013 8000", "008613800138000", "13800138000", "138-0013-8000", "8613800138000",
     "013800138000", "sip:13800138000@192.0.2.1;user=phone", "tel:+8613800138000", " 138 0013 8000 "],
)  # fmt: skip
def test_mobile_forms(typed: str) -> None:
    phone = PhoneNormaliser().normalise(typed)
    assert phone.e164 == "+8613800138000" and phone.kind is PhoneKind.MOBILE


@pytest.mark.parametrize(
    ("typed", "e164"),
    [("010-6552 9988", "+861065529988"), ("(021)12345678", "+862112345678"), ("021-1234 5678", "+862112345678"),
     ("+86 21 1234 5678", "+862112345678"), ("0086 10 6552 9988", "+861065529988")],
)  # fmt: skip
def test_landline_forms(typed: str, e164: str) -> None:
    phone = PhoneNormaliser().normalise(typed)
    assert phone.e164 == e164 and phone.kind is PhoneKind.LANDLINE


def test_foreign_numbers_keep_their_country() -> None:
    assert PhoneNormaliser().normalise("+852 2123 4567").e164 == "+85221234567"


@pytest.mark.parametrize("garbage", ["", "abc", "1001", "12345", "anonymous", "1" * 80, "+86 138"])
def test_garbage_is_a_clear_error_and_no_lookup(garbage: str) -> None:
    normaliser = PhoneNormaliser()
    with pytest.raises(ValidationError) as err:
        normaliser.normalise(garbage, field="phones[0]")
    assert err.value.field == "phones[0]" and err.value.code == "phone.invalid"
    assert normaliser.lookup_key(garbage) is None


def test_local_caller_id_without_area_code() -> None:
    # PSTN trunks deliver local landline calls without the area code.
    assert PhoneNormaliser().lookup_key("12345678") is None
    shanghai = PhoneNormaliser(local_area_code="21")
    assert shanghai.lookup_key("12345678") == "+862112345678"
    assert shanghai.lookup_key("13800138000") == "+8613800138000"  # mobiles untouched
    assert shanghai.lookup_key("010-65529988") == "+861065529988"  # other cities untouched


def test_national_display() -> None:
    assert PhoneNormaliser().normalise("13800138000").national == "138 0013 8000"
