"""The prompts that ship with the product: their text in Chinese and English, and where their
sound files are.

Files are `acd/sounds/<language>/<name>.wav` (8 kHz mono G.711 µ-law: telephone quality, half
the size of 16-bit PCM; any WAV an administrator uploads instead is converted when loaded). They were generated once from the texts below with the free eSpeak NG
synthesiser and committed; `python -m acd.prompt_catalogue generate` regenerates them (Debian
package `espeak-ng`), e.g. after a text changes. Administrators replace any of them with a
real recording by uploading a file under the same name.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from acd.say import LANGUAGES, prompt_names_for_numbers
from mediacore.errors import MediaError
from mediacore.prompts import PromptCache

log = logging.getLogger(__name__)

SOUNDS = Path(__file__).resolve().parent / "sounds"
RATE = 8000

_ZH_DIGITS = "零一二三四五六七八九"
_EN_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
             9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen",
             16: "sixteen", 17: "seventeen", 18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty",
             40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety", 100: "hundred",
             1000: "thousand", 1000000: "million", 1000000000: "billion"}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")

# name -> (Chinese, English)
PROMPTS: dict[str, tuple[str, str]] = {
    "ivr/welcome": ("您好，欢迎致电美颜连锁客户服务中心。", "Hello, and welcome to the Meiyan beauty chain service center."),
    "ivr/recorded-notice": ("为了提高服务质量，您的通话可能会被录音。", "Your call may be recorded to improve our service."),
    "ivr/choose-language": ("普通话服务请按一。For English, press two.", "普通话服务请按一。For English, press two."),
    "ivr/main-menu": ("查询会员积分请按一，预约服务请按二，门店地址和营业时间请按三，最新优惠活动请按四，"
                      "投诉建议留言请按五，人工服务请按零。",
                      "For your member points, press one. To book a service, press two. For store locations and "
                      "opening hours, press three. For our latest offers, press four. To leave a complaint or "
                      "suggestion, press five. To speak to an agent, press zero."),
    "ivr/invalid": ("您的输入有误。", "Sorry, that is not a valid choice."),
    "ivr/no-input": ("我们没有收到您的输入。", "We did not receive your choice."),
    "ivr/enter-member-number": ("请输入您的会员号或手机号码，以井号键结束。",
                                "Please enter your member number or mobile number, followed by the hash key."),
    "ivr/member-not-found": ("抱歉，没有找到您的会员信息。", "Sorry, we could not find your membership."),
    "ivr/your-points": ("您当前的积分是", "Your points balance is"),
    "ivr/points": ("分。", "points."),
    "ivr/your-level": ("您的会员级别是", "Your membership level is"),
    "ivr/next-appointment": ("您的下一次预约时间是", "Your next appointment is on"),
    "ivr/no-appointment": ("您目前没有预约。", "You have no upcoming appointment."),
    "ivr/booking-transfer": ("正在为您转接预约专员，请稍候。", "Connecting you to our booking team, please hold."),
    "ivr/store-hours": ("各门店营业时间为每天上午十点至晚上九点，节假日照常营业。门店地址请关注我们的公众号查询。",
                        "Our stores are open every day from ten a m to nine p m, holidays included. Store "
                        "addresses are on our official account."),
    "ivr/promotions": ("本月新客体验护理项目八折，会员生日当月享双倍积分。",
                       "This month, new customers get twenty percent off their first treatment, and members earn "
                       "double points in their birthday month."),
    "ivr/leave-message": ("请在提示音后留下您的投诉或建议，按井号键结束。",
                          "Please leave your complaint or suggestion after the tone, then press the hash key."),
    "ivr/message-saved": ("您的留言已记录，我们会尽快与您联系。", "Your message has been recorded. We will contact you soon."),
    "ivr/closed": ("您好，现在是非工作时间。我们的服务时间是每天上午九点至晚上九点。",
                   "Our service hours are nine a m to nine p m every day. We are closed now."),
    "ivr/transfer-agent": ("正在为您转接人工服务，请稍候。", "Connecting you to an agent, please hold."),
    "ivr/callback-booked": ("我们已记录您的回电请求，客服人员会尽快给您回电。",
                            "Your callback is booked. An agent will call you back shortly."),
    "ivr/rate-us": ("请对本次服务进行评价，非常满意请按五，满意请按四，一般请按三，不满意请按二，非常不满意请按一。",
                    "Please rate our service from one to five, five being very satisfied."),
    "ivr/thanks-rating": ("感谢您的评价。", "Thank you for your rating."),
    "ivr/goodbye": ("感谢您的来电，再见。", "Thank you for calling. Goodbye."),
    "queue/hold": ("您好，现在坐席繁忙，请稍候。", "All our agents are busy. Please hold."),
    "queue/position": ("您前面还有", "Callers ahead of you:"),
    "queue/callers": ("位客户在等待。", "."),
    "queue/wait": ("预计等待时间", "Estimated wait:"),
    "queue/minutes": ("分钟。", "minutes."),
    "queue/press-callback": ("如需回电，请按一。", "To be called back instead of waiting, press one."),
    "queue/callback-whisper": ("这是一个回电任务。", "This is a callback."),
    "queue/callback-press": ("如需回电，请按", "To be called back instead of waiting, press"),
    "queue/callback-booked": ("好的，我们会给您回电。", "Thank you. We will call you back."),
    "conf/enter-pin": ("请输入会议密码，以井号键结束。", "Please enter the conference PIN, followed by the hash key."),
    "conf/wrong-pin": ("密码错误。", "That PIN is not correct."),
    "conf/members": ("当前会议人数", "Members in the conference:"),
    "conf/alone": ("您是第一位参会者。", "You are the first member of the conference."),
    "conf/muted": ("您已被静音。", "You are muted."),
    "conf/unmuted": ("您已取消静音。", "You are no longer muted."),
    "vm/leave-message": ("对方无法接听，请在提示音后留言。", "The person you called is not available. Please leave a "
                                                                 "message after the tone."),
    "vm/saved": ("您的留言已保存。", "Your message has been saved."),
    "vm/enter-mailbox": ("请输入语音信箱号码，以井号键结束。", "Please enter your mailbox number, followed by the hash key."),
    "vm/enter-pin": ("请输入密码，以井号键结束。", "Please enter your password, followed by the hash key."),
    "vm/wrong-pin": ("信箱号码或密码错误。", "That mailbox number or password is not correct."),
    "vm/you-have": ("您有", "You have"),
    "vm/new-messages": ("条新留言。", "new messages."),
    "vm/no-new-messages": ("您没有新留言。", "You have no new messages."),
    "vm/no-messages": ("您的信箱中没有留言。", "There are no messages in your mailbox."),
    "vm/message-menu": ("重听请按一，下一条请按二，删除请按七，退出请按井号键。",
                        "To hear this message again, press one. For the next message, press two. To delete it, "
                        "press seven. To exit, press the hash key."),
    "vm/deleted": ("留言已删除。", "Message deleted."),
    "vm/no-more": ("没有更多留言了。", "There are no more messages."),
    "vm/goodbye": ("再见。", "Goodbye."),
}


def _number_texts() -> dict[str, tuple[str, str]]:
    """The read-out building blocks (acd.say) with their spoken text per language."""
    zh: dict[str, str] = {f"num/{d}": _ZH_DIGITS[d] for d in range(10)}
    zh.update({"num/10": "十", "num/100": "百", "num/1000": "千", "num/10000": "万", "num/100000000": "亿",
               "num/liang": "两", "num/yao": "幺", "num/minus": "负", "num/star": "星号", "num/hash": "井号",
               "money/yuan": "元", "money/jiao": "角", "money/fen": "分", "date/month": "月", "date/day": "日",
               "time/am": "上午", "time/pm": "下午", "time/oclock": "点", "time/minute": "分"})
    en: dict[str, str] = {f"num/{n}": word for n, word in _EN_WORDS.items()}
    en.update({"num/minus": "minus", "num/star": "star", "num/hash": "hash", "money/yuan": "yuan",
               "money/fen": "fen", "money/and": "and", "time/am": "a m", "time/pm": "p m", "time/oclock": "o'clock"})
    en.update({f"date/month-{m}": _MONTHS[m - 1] for m in range(1, 13)})
    names = set(prompt_names_for_numbers("zh-CN")) | set(prompt_names_for_numbers("en"))
    return {name: (zh.get(name, ""), en.get(name, "")) for name in sorted(names)}


def texts(language: str) -> dict[str, str]:
    """Every prompt name this language has, with its text."""
    index = LANGUAGES.index(language)
    merged = {**PROMPTS, **_number_texts()}
    return {name: pair[index] for name, pair in merged.items() if pair[index]}


def sound_path(language: str, name: str, root: Path = SOUNDS) -> Path:
    """Where a prompt's file is; refuses names that would leave the sounds folder."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}")
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or not all(ch.isalnum() or ch in "-_" for ch in p) for p in parts):
        raise ValueError(f"invalid prompt name {name!r}")
    return root / language / f"{name}.wav"


def find_sound(name: str, language: str, roots: tuple[Path, ...]) -> Path | None:
    """The file of prompt `name`: from the first of `roots` that has it in `language`, else in
    another language (the other language beats a silent gap). ValueError for a bad name."""
    for lang in (language, *[other for other in LANGUAGES if other != language]):
        for root in roots:
            path = sound_path(lang, name, root)
            if path.exists():
                return path
    return None


def prompt_audio(cache: PromptCache, names: Iterable[str], language: str, roots: tuple[Path, ...]) -> np.ndarray | None:
    """The prompts' audio played back to back as one buffer (so read-outs flow without gaps);
    prompts without a usable file are left out and logged. None if nothing is left."""
    pieces = []
    for name in names:
        try:
            path = find_sound(name, language, roots)
        except ValueError:
            path = None
        if path is None:
            log.warning("prompt %r has no sound file in any language", name)
            continue
        try:
            pieces.append(cache.load(path))
        except MediaError as exc:
            log.warning("prompt %s: %s", path, exc)
    if not pieces:
        return None
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def generate(root: Path = SOUNDS, only_missing: bool = False) -> int:
    """Synthesise every prompt with eSpeak NG into 8 kHz WAV files; returns how many were written."""
    import av  # PyAV's libswresample for the 22.05 kHz -> 8 kHz conversion
    import soundfile

    voices = {"zh-CN": "cmn", "en": "en-us"}
    written = 0
    for language in LANGUAGES:
        for name, text in texts(language).items():
            target = sound_path(language, name, root)
            if only_missing and target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
                subprocess.run(["espeak-ng", "-v", voices[language], "-s", "150", "-w", raw.name, text],
                               check=True, capture_output=True)
                pcm, rate = soundfile.read(raw.name, dtype="int16")
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
            soundfile.write(target, _tidy(np.concatenate(chunks)), RATE, subtype="ULAW")
            written += 1
    moh = root / "moh" / "default.wav"
    if not (only_missing and moh.exists()):
        moh.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(moh, compose_hold_music(), RATE, subtype="ULAW")
        written += 1
    return written


def compose_hold_music(seconds_per_chord: float = 60 / 84 * 8) -> np.ndarray:
    """The default music on hold (`sounds/moh/default.wav`): a soft arpeggio over I-V-vi-IV in
    C major with a bass pad, composed here so it carries no one else's rights. ~46 s loop."""
    chords = ((60, 64, 67, 72), (55, 59, 62, 67), (57, 60, 64, 69), (53, 57, 60, 65))
    eighth = seconds_per_chord / 16
    bars = []
    for round_ in range(2):
        for chord in chords:
            bar = np.zeros(int(RATE * seconds_per_chord))
            for i, k in enumerate((0, 1, 2, 3, 2, 1, 2, 3) * 2):
                midi = chord[k] + (12 if round_ and i % 4 == 3 else 0)
                t = np.arange(int(RATE * eighth * 3)) / RATE
                f = 440 * 2 ** ((midi - 69) / 12)
                tone = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) + 0.1 * np.sin(6 * np.pi * f * t)
                tone *= 0.35 * np.exp(-t * 2.2) * (1 - np.exp(-t * 60))
                start = int(i * RATE * eighth)
                end = min(len(bar), start + len(tone))
                bar[start:end] += tone[:end - start]
            t = np.arange(len(bar)) / RATE
            bass = 440 * 2 ** ((chord[0] - 12 - 69) / 12)
            bar += 0.25 * np.sin(2 * np.pi * bass * t) * np.minimum(1, t * 4) * np.minimum(1, (t[-1] - t) * 4)
            bars.append(bar)
    music = np.concatenate(bars)
    return (music / np.abs(music).max() * 0.6 * 32767).astype(np.int16)


def _tidy(pcm):
    """Peak at -3 dBFS (eSpeak output clips) and at most 40 ms of silence at either end, so
    concatenated read-outs (digits, amounts) flow without gaps."""
    level = np.abs(pcm.astype(np.int32))
    loud = np.nonzero(level > 400)[0]
    if len(loud):
        margin = RATE // 25
        pcm = pcm[max(0, loud[0] - margin): loud[-1] + margin]
    peak = max(1, int(np.abs(pcm.astype(np.int32)).max()))
    return (pcm.astype(np.float64) * (23197 / peak)).round().astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acd.prompt_catalogue", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check"])
    parser.add_argument("--missing", action="store_true", help="generate only prompts without a file")
    args = parser.parse_args(argv)
    if args.command == "generate":
        print(f"{generate(only_missing=args.missing)} prompt files written under {SOUNDS}")
        return 0
    missing = [f"{lang}/{name}" for lang in LANGUAGES for name in texts(lang) if not sound_path(lang, name).exists()]
    print("\n".join(missing) or "every prompt has its file")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
