"""Listening to a mailbox from a phone (*97, *98), sans-IO: keys, prompt ends and look-up
answers go in, actions come out (say these prompts, play this message, mark it heard, delete it,
hang up). `acd.voicemail_calls` carries the actions out on a live call.

    *98:  "enter your mailbox number, then #"  ->  "enter your PIN, then #"
    *97:  (the caller's own mailbox: no PIN)
    then  "you have N new messages", each message in `play_order` (new ones first, each
          oldest first), and after each the menu:
          1 replay   2 next   7 delete   # exit

Keys act at once, also while a message plays. A message counts as heard once it starts
playing (Asterisk moves it to Old then too). A wrong mailbox or PIN gets the same answer, so
the menu never tells which mailboxes exist; three wrong tries end the call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from acd.say import say_number
from acd.voicemail import Message, play_order

#: Wrong mailbox/PIN entries, or unanswered prompts, before the menu says goodbye.
MAX_TRIES = 3
#: Seconds to wait for a key after a question or the message menu (Asterisk waits 5-10 s).
KEY_TIMEOUT = 8.0
MAX_DIGITS = 12


class Step(enum.Enum):
    MAILBOX = "mailbox"     # keying the mailbox number
    PIN = "pin"             # keying the PIN
    LOADING = "loading"     # the messages are being read
    MESSAGES = "messages"   # playing a message or its menu
    GOODBYE = "goodbye"     # the last prompt plays; then hang up
    DONE = "done"


@dataclass(frozen=True)
class Say:
    """Play these catalogue prompts back to back; `prompt_done` follows."""
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class PlayMessage:
    """Play `intro` prompts, then the message's audio, as one; `prompt_done` follows."""
    message: Message
    intro: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadMessages:
    """Read the mailbox's messages; `messages_loaded` follows."""
    mailbox: str


@dataclass(frozen=True)
class MarkHeard:
    message_id: int


@dataclass(frozen=True)
class DeleteMessage:
    message_id: int


@dataclass(frozen=True)
class StartTimer:
    """Call `timeout(token)` after `seconds` unless something else happened first."""
    seconds: float
    token: int


@dataclass(frozen=True)
class Hangup:
    reason: str


Action = Say | PlayMessage | LoadMessages | MarkHeard | DeleteMessage | StartTimer | Hangup

GOODBYE = "vm/goodbye"


class MailboxMenu:
    """One caller listening to one mailbox."""

    def __init__(self, mailbox: str, *, trusted: bool, language: str,
                 opens: Callable[[str, str], bool]) -> None:
        """`mailbox` "" asks for the number; `trusted` (the caller's own extension) skips the
        PIN; `opens(mailbox, pin)` says whether a keyed PIN opens a mailbox."""
        self.mailbox = mailbox
        self.asked_mailbox = not mailbox
        self.trusted = trusted and bool(mailbox)
        self.language = language
        self._opens = opens
        self.step = Step.MAILBOX
        self.digits = ""
        self.tries = 0
        self.messages: list[Message] = []
        self.index = -1
        #: What the last play was: "message" (its menu follows) or "menu" (a key is awaited).
        self._playing = ""
        self._token = 0

    # ------------------------------------------------------------- inputs

    def start(self) -> list[Action]:
        if self.trusted:
            self.step = Step.LOADING
            return [LoadMessages(self.mailbox)]
        return self._ask(Step.MAILBOX if self.asked_mailbox else Step.PIN)

    def digit(self, key: str) -> list[Action]:
        self._token += 1            # any key cancels the wait for one
        if self.step in (Step.MAILBOX, Step.PIN):
            if key != "#":
                if key.isdigit() and len(self.digits) < MAX_DIGITS:
                    self.digits += key
                return []
            entered, self.digits = self.digits, ""
            if self.step is Step.MAILBOX:
                self.mailbox = entered
                return self._ask(Step.PIN)
            if self.mailbox and self._opens(self.mailbox, entered):
                self.step = Step.LOADING
                return [LoadMessages(self.mailbox)]
            return self._wrong(("vm/wrong-pin",))
        if self.step is Step.MESSAGES:
            return self._message_key(key)
        return []

    def messages_loaded(self, messages: list[Message]) -> list[Action]:
        if self.step is not Step.LOADING:
            return []
        self.messages = play_order(messages)
        if not self.messages:
            return self._goodbye(("vm/no-messages",))
        new = sum(1 for m in self.messages if not m.heard)
        intro = ("vm/you-have", *say_number(new, self.language), "vm/new-messages") if new else ("vm/no-new-messages",)
        self.step = Step.MESSAGES
        return self._play(0, intro)

    def prompt_done(self) -> list[Action]:
        """The last Say or PlayMessage played to its end."""
        if self.step is Step.GOODBYE:
            self.step = Step.DONE
            return [Hangup("voicemail_done")]
        if self.step in (Step.MAILBOX, Step.PIN):
            return [self._timer()]
        if self.step is Step.MESSAGES:
            if self._playing == "message":
                self._playing = "menu"
                return [Say(("vm/message-menu",))]
            return [self._timer()]
        return []

    def timeout(self, token: int) -> list[Action]:
        if token != self._token:
            return []
        if self.step in (Step.MAILBOX, Step.PIN):
            return self._wrong(("ivr/no-input",))
        if self.step is Step.MESSAGES:
            self.tries += 1
            if self.tries >= MAX_TRIES:
                return self._goodbye(())
            self._playing = "menu"
            return [Say(("vm/message-menu",))]
        return []

    # ------------------------------------------------------------- steps

    def _ask(self, step: Step) -> list[Action]:
        self.step = step
        self.digits = ""
        return [Say(("vm/enter-mailbox",) if step is Step.MAILBOX else ("vm/enter-pin",))]

    def _wrong(self, said: tuple[str, ...]) -> list[Action]:
        self.tries += 1
        if self.tries >= MAX_TRIES:
            return self._goodbye(said)
        step = Step.MAILBOX if self.asked_mailbox else Step.PIN
        self.step = step
        self.digits = ""
        return [Say((*said, "vm/enter-mailbox" if step is Step.MAILBOX else "vm/enter-pin"))]

    def _message_key(self, key: str) -> list[Action]:
        current = self.messages[self.index]
        self.tries = 0
        if key == "1":
            return self._play(self.index, ())
        if key == "2":
            return self._play(self.index + 1, ())
        if key == "7":
            return [DeleteMessage(current.id), *self._play(self.index + 1, ("vm/deleted",))]
        if key == "#":
            return self._goodbye(())
        return []

    def _play(self, index: int, intro: tuple[str, ...]) -> list[Action]:
        if index >= len(self.messages):
            return self._goodbye((*intro, "vm/no-more"))
        self.index = index
        self._playing = "message"
        message = self.messages[index]
        actions: list[Action] = [PlayMessage(message, intro)]
        if not message.heard:
            self.messages[index] = replace(message, heard=True)
            actions.append(MarkHeard(message.id))
        return actions

    def _goodbye(self, said: tuple[str, ...]) -> list[Action]:
        self.step = Step.GOODBYE
        return [Say((*said, GOODBYE))]

    def _timer(self) -> StartTimer:
        self._token += 1
        return StartTimer(KEY_TIMEOUT, self._token)
