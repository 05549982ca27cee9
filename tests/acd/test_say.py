"""Numbers, amounts and times read out as prompt sequences, checked as the words they spell."""

from __future__ import annotations

from datetime import datetime

import pytest

from acd.say import SayError, prompt_names_for_numbers, say_amount, say_datetime, say_digits, say_number

ZH = {"num/0": "零", "num/1": "一", "num/2": "二", "num/3": "三", "num/4": "四", "num/5": "五", "num/6": "六",
      "num/7": "七", "num/8": "八", "num/9": "九", "num/10": "十", "num/100": "百", "num/1000": "千",
      "num/10000": "万", "num/100000000": "亿", "num/liang": "两", "num/yao": "幺", "num/minus": "负",
      "money/yuan": "元", "money/jiao": "角", "money/fen": "分", "date/month": "月", "date/day": "日",
      "time/am": "上午", "time/pm": "下午", "time/oclock": "点", "time/minute": "分", "num/hash": "井号"}


def zh(names: list[str]) -> str:
    return "".join(ZH[n] for n in names)


@pytest.mark.parametrize(("value", "words"), [
    (0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"), (110, "一百一十"),
    (200, "两百"), (1010, "一千零一十"), (2345, "两千三百四十五"), (10005, "一万零五"), (10050, "一万零五十"),
    (12000, "一万两千"), (20000, "两万"), (100000005, "一亿零五"), (-3, "负三"), ("  42 ", "四十二"),
    (123456789, "一亿两千三百四十五万六千七百八十九"), (1001000, "一百万一千"),
])
def test_chinese_numbers(value, words):
    assert zh(say_number(value, "zh-CN")) == words


@pytest.mark.parametrize(("value", "names"), [
    (0, ["0"]), (13, ["13"]), (40, ["40"]), (99, ["90", "9"]), (105, ["1", "100", "5"]),
    (12305, ["12", "1000", "3", "100", "5"]), (2000000, ["2", "1000000"]),
])
def test_english_numbers(value, names):
    assert say_number(value, "en") == [f"num/{n}" for n in names]


def test_amounts_digits_and_times():
    assert zh(say_amount("12.50", "zh-CN")) == "十二元五角"
    assert zh(say_amount("12.05", "zh-CN")) == "十二元零五分"
    assert zh(say_amount("0.3", "zh-CN")) == "三角"
    assert zh(say_amount(0, "zh-CN")) == "零元"
    assert say_amount("3.07", "en") == ["num/3", "money/yuan", "money/and", "num/7", "money/fen"]
    assert zh(say_digits("13800138000", "zh-CN")) == "幺三八零零幺三八零零零"
    assert zh(say_digits("12#", "zh-CN")) == "幺二井号"
    assert zh(say_datetime(datetime(2026, 11, 23, 14, 30), "zh-CN")) == "十一月二十三日下午两点三十分"
    assert zh(say_datetime(datetime(2026, 1, 2, 11, 0), "zh-CN")) == "一月二日上午十一点"


@pytest.mark.parametrize("call", [
    lambda: say_number("12a", "zh-CN"), lambda: say_number(10**12, "en"), lambda: say_number(True, "en"),
    lambda: say_number(5, "fr"), lambda: say_digits("12-3", "en"), lambda: say_amount("-1", "zh-CN"),
    lambda: say_amount("abc", "en"),
])
def test_what_cannot_be_read_out_is_refused(call):
    with pytest.raises(SayError):
        call()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_produced_name_is_in_the_catalogue_list(language):
    known = set(prompt_names_for_numbers(language))
    produced = set()
    for n in list(range(0, 1200)) + [10**k + 7 for k in range(3, 12)] + [987654321012]:
        produced |= set(say_number(n, language))
    produced |= set(say_amount("1234.56", language)) | set(say_digits("0123456789*#", language))
    for month in range(1, 13):
        produced |= set(say_datetime(datetime(2026, month, 28, month + 8, month * 4), language))
    assert produced <= known, produced - known
