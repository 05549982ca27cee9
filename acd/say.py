"""Reading numbers, amounts and times out loud by concatenating recorded prompts.

Each function turns a value into the names of the prompts to play, in order, for one language
(`zh-CN` or `en`); `acd.prompt_catalogue` holds the text of every name, and the sound files are
`acd/sounds/<language>/<name>.wav`. Pure functions: the IVR tests check the sequences directly.

Chinese follows the spoken convention: 一万零五 (a 零 for each run of skipped units), 十二 not
一十二 at the start, 两 for a 2 before 千/万/亿 and a leading 2 before 百 (一万两千, 两百). English
groups by thousands: twelve thousand three hundred five.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

LANGUAGES = ("zh-CN", "en")


class SayError(ValueError):
    """A value that cannot be read out (not a number, negative where not allowed, too large)."""


# Below a trillion (一万亿): no balance or points figure gets near it; longer keys are read as digits.
_MAX = 10**12 - 1


def say_number(value: int | str, language: str) -> list[str]:
    """Prompts reading a whole number (negative ones get a leading minus)."""
    n = _integer(value)
    prefix = ["num/minus"] if n < 0 else []
    n = abs(n)
    if n > _MAX:
        raise SayError(f"{value!r} is too large to read out as a number")
    if language == "zh-CN":
        return prefix + _zh_number(n)
    if language == "en":
        return prefix + _en_number(n)
    raise SayError(f"unknown language {language!r}")


def say_digits(value: str, language: str) -> list[str]:
    """Prompts reading a string digit by digit (order numbers, phone numbers); 1 is 幺 in
    Chinese digit strings, as operators read them to avoid confusion with 7."""
    text = str(value).strip()
    if not text or not all(ch.isdigit() or ch in "*#" for ch in text):
        raise SayError(f"{value!r} is not a digit string")
    _check_language(language)
    names = {"*": "num/star", "#": "num/hash"}
    out = []
    for ch in text:
        if ch in names:
            out.append(names[ch])
        elif ch == "1" and language == "zh-CN":
            out.append("num/yao")
        else:
            out.append(f"num/{ch}")
    return out


def say_amount(value: str | int | float | Decimal, language: str) -> list[str]:
    """Prompts reading an amount in yuan: 12.50 -> 十二元五角 / twelve yuan fifty (fen)."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise SayError(f"{value!r} is not an amount") from None
    if amount < 0:
        raise SayError(f"{value!r} is a negative amount")
    fen_total = int(amount * 100)
    yuan, fen = divmod(fen_total, 100)
    if language == "zh-CN":
        jiao, fen = divmod(fen, 10)
        out = say_number(yuan, language) + ["money/yuan"] if yuan or not (jiao or fen) else []
        if jiao:
            out += say_number(jiao, language) + ["money/jiao"]
        if fen:
            if yuan and not jiao:
                out.append("num/0")
            out += say_number(fen, language) + ["money/fen"]
        return out
    if language == "en":
        out = say_number(yuan, language) + ["money/yuan"]
        if fen:
            out += ["money/and"] + say_number(fen, language) + ["money/fen"]
        return out
    raise SayError(f"unknown language {language!r}")


def say_datetime(moment: datetime, language: str) -> list[str]:
    """Prompts reading a date and time of day: 十一月二十三日 下午 三点 三十分 /
    November twenty three, three thirty p m."""
    _check_language(language)
    hour12 = moment.hour % 12 or 12
    half = "time/am" if moment.hour < 12 else "time/pm"
    if language == "zh-CN":
        out = say_number(moment.month, language) + ["date/month"]
        out += say_number(moment.day, language) + ["date/day", half]
        out += ["num/liang" if hour12 == 2 else f"num/{hour12}"] if hour12 <= 10 else say_number(hour12, language)
        out.append("time/oclock")
        if moment.minute:
            out += say_number(moment.minute, language) + ["time/minute"]
        return out
    out = [f"date/month-{moment.month}"] + say_number(moment.day, language)
    out += say_number(hour12, language)
    if moment.minute:
        out += (["num/0"] if moment.minute < 10 else []) + say_number(moment.minute, language)
    else:
        out.append("time/oclock")
    return out + [half]


def prompt_names_for_numbers(language: str) -> list[str]:
    """Every prompt name the functions above can produce for `language` (for the catalogue
    check that all of them have a sound file)."""
    _check_language(language)
    names = {f"num/{d}" for d in range(10)} | {"num/minus", "num/star", "num/hash", "money/yuan", "money/fen",
                                                "time/am", "time/pm", "time/oclock"}
    if language == "zh-CN":
        names |= {"num/10", "num/100", "num/1000", "num/10000", "num/100000000", "num/liang", "num/yao",
                  "money/jiao", "date/month", "date/day", "time/minute"}
    else:
        names |= {f"num/{n}" for n in range(10, 20)} | {f"num/{n}" for n in range(20, 100, 10)}
        names |= {"num/100", "num/1000", "num/1000000", "num/1000000000", "money/and"}
        names |= {f"date/month-{m}" for m in range(1, 13)}
    return sorted(names)


# -- Chinese ---------------------------------------------------------------------------------------

_ZH_UNITS = ((3, "num/1000"), (2, "num/100"), (1, "num/10"))


def _zh_number(n: int) -> list[str]:
    if n == 0:
        return ["num/0"]
    # Groups of four digits: 亿, 万, and the units below.
    groups = []
    while n:
        n, group = divmod(n, 10000)
        groups.append(group)
    big = ("", "num/10000", "num/100000000")
    out: list[str] = []
    pending_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            pending_zero = bool(out)
            continue
        if out and (pending_zero or group < 1000):
            out.append("num/0")
        if group == 2 and big[index]:
            out.append("num/liang")              # 两万, 两亿
        else:
            out += _zh_group(group, leading=not out)
        if big[index]:
            out.append(big[index])
        pending_zero = False
    return out


def _zh_group(n: int, *, leading: bool) -> list[str]:
    """One group of up to four digits (1..9999); `leading`: first group of the whole number."""
    out: list[str] = []
    zero = False
    for power, unit in _ZH_UNITS:
        digit = (n // 10**power) % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("num/0")
            zero = False
        if power == 1 and digit == 1 and leading and not out:
            out.append(unit)                     # 十二, not 一十二
            continue
        if digit == 2 and (power == 3 or (power == 2 and leading and not out)):
            out.append("num/liang")              # 两千 anywhere (一万两千), 两百 at the start
        else:
            out.append(f"num/{digit}")
        out.append(unit)
    last = n % 10
    if last:
        if zero:
            out.append("num/0")
        out.append(f"num/{last}")
    return out


# -- English ---------------------------------------------------------------------------------------

_EN_SCALES = ((10**9, "num/1000000000"), (10**6, "num/1000000"), (10**3, "num/1000"))


def _en_number(n: int) -> list[str]:
    if n == 0:
        return ["num/0"]
    out: list[str] = []
    for scale, name in _EN_SCALES:
        if n >= scale:
            out += _en_below_thousand(n // scale) + [name]
            n %= scale
    if n:
        out += _en_below_thousand(n)
    return out


def _en_below_thousand(n: int) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [f"num/{hundreds}", "num/100"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        out.append(f"num/{tens * 10}")
        if ones:
            out.append(f"num/{ones}")
    elif rest:
        out.append(f"num/{rest}")
    return out


def _integer(value: int | str) -> int:
    if isinstance(value, bool):
        raise SayError(f"{value!r} is not a number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise SayError(f"{value!r} is not a whole number") from None


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise SayError(f"unknown language {language!r}")
