"""An IVR call walking a flow, sans-IO: fed the caller's keys, prompt ends, timer expiries and
look-up results; answers with actions (play these prompts, start a timer, look this up, record
a message, hand the call to a queue).

The runner (`acd.ivr_calls`) owns the media and the clock and only carries actions out, so every
rule here — retries, timeouts, type-ahead, barge-in, loops — is tested without sockets.

Keys pressed while a non-interruptible prompt plays (a legal notice) are kept as type-ahead for
the next node that reads keys, the way regular callers dial through a menu they know by heart.
Prompts of nodes that read keys stop at the first key (barge-in).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from acd.ivr_flow import Flow, Node, NodeType, PromptItem, Say
from acd.say import SayError, say_amount, say_datetime, say_digits, say_number

log = logging.getLogger(__name__)

# Nodes passed without the caller doing anything before we decide the flow loops on itself.
MAX_AUTOMATIC_STEPS = 64


@dataclass(frozen=True)
class Play:
    prompts: tuple[str, ...]
    language: str
    interruptible: bool


@dataclass(frozen=True)
class StopPlay:
    pass


@dataclass(frozen=True)
class StartTimer:
    token: int
    seconds: float


@dataclass(frozen=True)
class Lookup:
    query: str
    key: str


@dataclass(frozen=True)
class RecordMessage:
    ticket_type: str
    max_seconds: int


@dataclass(frozen=True)
class BookCallback:
    queue: str
    number: str


@dataclass(frozen=True)
class StoreRating:
    rating: int


@dataclass(frozen=True)
class Transfer:
    """The flow ends here: the call goes to a queue, an extension or a mailbox."""

    kind: NodeType
    target: str
    skills: dict[str, int] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hangup:
    reason: str


Action = Play | StopPlay | StartTimer | Lookup | RecordMessage | BookCallback | StoreRating | Transfer | Hangup


class IvrSession:
    """One caller in one flow. Call `start()` once, then feed what happens."""

    def __init__(self, flow: Flow, *, caller: str, variables: dict[str, str] | None = None,
                 language: str | None = None, is_open: Callable[[str], bool] | None = None,
                 now: Callable[[], datetime] = datetime.now) -> None:
        self.flow = flow
        self.caller = caller
        self.language = language or flow.language
        self.variables: dict[str, str] = dict(variables or {})
        #: Node ids in the order the caller went through them (for reports and the test-call view).
        self.path: list[str] = []
        self.finished = False
        #: Read-outs that could not be spoken (a variable missing or not a number), for the log.
        self.problems: list[str] = []
        self._is_open = is_open or (lambda name: True)
        self._now = now
        self._node: Node | None = None
        self._waiting = ""            # "prompt", "keys", "lookup", "message" or ""
        self._playing = False
        self._tries = 0
        self._digits = ""
        self._type_ahead = ""
        self._timer = 0
        self._steps = 0

    # -- input ------------------------------------------------------------------------------------

    def start(self) -> list[Action]:
        return self._enter(self.flow.start)

    def prompt_done(self) -> list[Action]:
        """The last Play finished (or was stopped)."""
        if self.finished or not self._playing:
            return []
        self._playing = False
        node = self._require()
        if node.type in _READS_KEYS:
            return [self._start_timer(node.timeout)]
        return self._after_prompts(node)

    def digit(self, key: str) -> list[Action]:
        if self.finished or key not in "0123456789*#ABCD" or len(key) != 1:
            return []
        node = self._require()
        if node.type not in _READS_KEYS or self._waiting != "keys":
            self._type_ahead += key
            return []
        self._steps = 0
        out: list[Action] = []
        if self._playing:
            self._playing = False
            out.append(StopPlay())
        return out + self._key(node, key)

    def timeout(self, token: int) -> list[Action]:
        if self.finished or token != self._timer or self._waiting != "keys" or self._playing:
            return []
        node = self._require()
        if node.type is NodeType.COLLECT and len(self._digits) >= node.min_digits:
            return self._collected(node)
        return self._retry(node, node.timeout_prompts)

    def lookup_result(self, values: dict[str, str] | None) -> list[Action]:
        """What the Lookup found (its fields become variables), or None for nothing found."""
        if self.finished or self._waiting != "lookup":
            return []
        node = self._require()
        self._waiting = ""
        if values is None:
            return self._enter(node.not_found)
        self.variables.update({k: str(v) for k, v in values.items()})
        return self._enter(node.found)

    def message_recorded(self, saved: bool) -> list[Action]:
        if self.finished or self._waiting != "message":
            return []
        node = self._require()
        self.variables["message_saved"] = "1" if saved else "0"
        self._waiting = ""
        return self._enter(node.next)

    def hung_up(self) -> None:
        self.finished = True

    # -- walking ----------------------------------------------------------------------------------

    def _enter(self, node_id: str | None) -> list[Action]:
        if node_id is None:
            return self._end("flow has no next node")
        self._steps += 1
        if self._steps > MAX_AUTOMATIC_STEPS:
            return self._end(f"flow loops without caller input (at {node_id})")
        node = self.flow.nodes[node_id]
        self._node = node
        self.path.append(node_id)
        self._tries = 0
        self._digits = ""
        self._waiting = ""
        if node.type is NodeType.LOOKUP:
            key = self.variables.get(node.var or "", "") if node.var else self.caller
            self._waiting = "lookup"
            return [Lookup(node.query or "", key)]
        if node.type is NodeType.CONDITION:
            return self._enter(node.then if self._test(node) else node.otherwise)
        if node.type in _READS_KEYS:
            self._waiting = "keys"
            if self._type_ahead:
                return self._replay_type_ahead(node)
        return self._play(node.prompts, node) or self._after_prompts(node)

    def _after_prompts(self, node: Node) -> list[Action]:
        """A node's prompts have played (or it had none): do what the node does."""
        kind = node.type
        if kind is NodeType.PLAY:
            return self._enter(node.next)
        if kind in (NodeType.QUEUE, NodeType.EXTENSION, NodeType.VOICEMAIL):
            self.finished = True
            return [Transfer(kind, node.target or "", dict(node.skills), dict(self.variables))]
        if kind is NodeType.MESSAGE:
            self._waiting = "message"
            return [RecordMessage(node.target or "", node.max_seconds)]
        if kind is NodeType.CALLBACK:
            return [BookCallback(node.target or "", self.caller)] + self._enter(node.next)
        if kind is NodeType.HANGUP:
            return self._end("flow ended")
        return [self._start_timer(node.timeout)]   # a key-reading node without prompts

    def _key(self, node: Node, key: str) -> list[Action]:
        if node.type is NodeType.COLLECT:
            if key == node.terminator:
                if len(self._digits) >= node.min_digits:
                    return self._collected(node)
                return self._retry(node, node.invalid_prompts)
            self._digits += key
            if len(self._digits) >= node.max_digits:
                return self._collected(node)
            return [self._start_timer(node.timeout)]
        if node.type is NodeType.SURVEY:
            if key in "12345":
                self.variables["rating"] = key
                return [StoreRating(int(key))] + self._enter(node.next)
            return self._retry(node, node.invalid_prompts)
        choice = node.options.get(key)
        if choice is None:
            return self._retry(node, node.invalid_prompts)
        if node.type is NodeType.LANGUAGE:
            self.language = choice
            return self._enter(node.next)
        return self._enter(choice)

    def _collected(self, node: Node) -> list[Action]:
        self.variables[node.var or "digits"] = self._digits
        return self._enter(node.next)

    def _retry(self, node: Node, notice: tuple[PromptItem, ...]) -> list[Action]:
        self._tries += 1
        self._digits = ""
        self._type_ahead = ""
        if self._tries >= node.retries:
            fallback = node.on_fail if node.type in (NodeType.MENU, NodeType.COLLECT) else node.next
            return self._enter(fallback)
        actions = self._play(notice + node.prompts, node)
        return actions or [self._start_timer(node.timeout)]

    def _replay_type_ahead(self, node: Node) -> list[Action]:
        """Keys typed ahead, fed one by one while they stay on this node; a key that leads to
        another node leaves the rest for that node (its `_enter` comes back here)."""
        out: list[Action] = []
        while self._type_ahead and not self.finished and self._node is node and self._waiting == "keys":
            key, self._type_ahead = self._type_ahead[0], self._type_ahead[1:]
            out += self._key(node, key)
        return out

    def _play(self, items: tuple[PromptItem, ...], node: Node) -> list[Action]:
        names = self._resolve(items)
        if not names:
            return []
        self._playing = True
        return [Play(tuple(names), self.language, interruptible=node.type in _READS_KEYS)]

    def _resolve(self, items: tuple[PromptItem, ...]) -> list[str]:
        names: list[str] = []
        for item in items:
            if isinstance(item, str):
                names.append(item)
                continue
            names += self._say(item)
        return names

    def _say(self, item: Say) -> list[str]:
        value = self.variables.get(item.var)
        try:
            if value is None:
                raise SayError(f"variable {item.var!r} is not set")
            if item.kind == "number":
                return say_number(value, self.language)
            if item.kind == "digits":
                return say_digits(value, self.language)
            if item.kind == "amount":
                return say_amount(value, self.language)
            return say_datetime(datetime.fromisoformat(value), self.language)
        except (SayError, ValueError) as exc:
            self.problems.append(f"{self._node.id if self._node else '?'}: {exc}")
            log.warning("IVR %s: cannot read out %s: %s", self.flow.name, item, exc)
            return []

    def _test(self, node: Node) -> bool:
        arg = node.argument or ""
        if node.test == "time":
            return self._is_open(arg)
        if node.test == "vip":
            try:
                return int(self.variables.get("vip_level", "0")) >= int(arg)
            except ValueError:
                return False
        if node.test == "blacklisted":
            return self.variables.get("blacklisted") == "1"
        if node.test == "language":
            return self.language == arg
        name, _, expected = arg.partition("=")
        return self.variables.get(name.strip()) == expected.strip()

    def _start_timer(self, seconds: float) -> StartTimer:
        self._timer += 1
        return StartTimer(self._timer, seconds)

    def _end(self, reason: str) -> list[Action]:
        self.finished = True
        if reason != "flow ended":
            log.warning("IVR %s ends the call: %s", self.flow.name, reason)
        return [Hangup(reason)]

    def _require(self) -> Node:
        assert self._node is not None, "start() first"
        return self._node


_READS_KEYS = frozenset({NodeType.MENU, NodeType.COLLECT, NodeType.LANGUAGE, NodeType.SURVEY})
