"""IVR flows as data: the node types, their fields, and the checks a flow passes before use.

A flow is a JSON object (stored in the database, edited in the web UI, exported as JSON):

    {"name": "main", "version": 3, "start": "welcome", "language": "zh-CN",
     "nodes": {
        "welcome": {"type": "play", "prompts": ["ivr/welcome"], "next": "menu"},
        "menu": {"type": "menu", "prompts": ["ivr/main-menu"], "options": {"1": "points", "0": "agent"},
                 "timeout": 5, "retries": 3, "on_fail": "agent"},
        "agent": {"type": "queue", "queue": "8002"}}}

A prompt list item is a prompt name (`acd/sounds/<language>/<name>.wav`) or a read-out of a
variable: {"say": "number" | "digits" | "amount" | "datetime", "var": "points"}.

`parse_flow` refuses a flow with the list of everything wrong in it (unknown node types and
fields, dangling `next`s, bad keys, out-of-range numbers), so an administrator sees all the
mistakes at once and a running call never meets a broken flow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from acd.say import LANGUAGES

KEYS = frozenset("0123456789*#")
SAY_KINDS = ("number", "digits", "amount", "datetime")
LOOKUPS = ("member_points", "workorder_status", "order_status", "next_appointment", "caller_member")
TESTS = ("time", "vip", "blacklisted", "var", "language")


class FlowError(ValueError):
    """A flow that cannot run; `problems` lists every mistake found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class NodeType(Enum):
    PLAY = "play"            # prompts, then next
    MENU = "menu"            # prompts, one key chooses the next node
    COLLECT = "collect"      # prompts, then digits into a variable
    LOOKUP = "lookup"        # a CRM query; found / not_found
    CONDITION = "condition"  # a test; then / else
    LANGUAGE = "language"    # one key chooses the language
    QUEUE = "queue"          # leave the flow: into an ACD queue
    EXTENSION = "extension"  # leave the flow: ring an extension
    VOICEMAIL = "voicemail"  # leave the flow: a mailbox
    MESSAGE = "message"      # record a voice message that becomes a ticket; then next
    CALLBACK = "callback"    # book a callback from a queue; then next
    SURVEY = "survey"        # a 1-5 rating stored against the call; then next
    HANGUP = "hangup"


@dataclass(frozen=True)
class Say:
    kind: str
    var: str


PromptItem = str | Say


@dataclass(frozen=True)
class Node:
    id: str
    type: NodeType
    prompts: tuple[PromptItem, ...] = ()
    next: str | None = None
    #: menu and language: key -> node id (menu) or language (language)
    options: dict[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    retries: int = 3
    invalid_prompts: tuple[PromptItem, ...] = ()
    timeout_prompts: tuple[PromptItem, ...] = ()
    on_fail: str | None = None
    # collect
    var: str | None = None
    min_digits: int = 1
    max_digits: int = 20
    terminator: str = "#"
    # lookup
    query: str | None = None
    found: str | None = None
    not_found: str | None = None
    # condition
    test: str | None = None
    argument: str | None = None
    then: str | None = None
    otherwise: str | None = None
    # queue / extension / voicemail / callback target; message ticket type
    target: str | None = None
    skills: dict[str, int] = field(default_factory=dict)
    max_seconds: int = 120

    def successors(self) -> list[str]:
        ids = [self.next, self.on_fail, self.found, self.not_found, self.then, self.otherwise]
        if self.type is NodeType.MENU:
            ids += list(self.options.values())
        return [i for i in ids if i]


@dataclass(frozen=True)
class Flow:
    name: str
    version: int
    start: str
    language: str
    nodes: dict[str, Node]

    def to_json(self) -> str:
        return json.dumps(self.raw, ensure_ascii=False, indent=2, sort_keys=True)

    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# The fields each node type takes (beyond "type"), and which of them name other nodes.
_FIELDS: dict[NodeType, set[str]] = {
    NodeType.PLAY: {"prompts", "next"},
    NodeType.MENU: {"prompts", "options", "timeout", "retries", "invalid_prompts", "timeout_prompts", "on_fail"},
    NodeType.COLLECT: {"prompts", "var", "min", "max", "terminator", "timeout", "retries", "invalid_prompts",
                       "timeout_prompts", "next", "on_fail"},
    NodeType.LOOKUP: {"query", "var", "found", "not_found"},
    NodeType.CONDITION: {"test", "argument", "then", "else"},
    NodeType.LANGUAGE: {"prompts", "options", "timeout", "retries", "next"},
    NodeType.QUEUE: {"prompts", "queue", "skills"},
    NodeType.EXTENSION: {"prompts", "extension"},
    NodeType.VOICEMAIL: {"prompts", "mailbox"},
    NodeType.MESSAGE: {"prompts", "ticket_type", "max_seconds", "next"},
    NodeType.CALLBACK: {"prompts", "queue", "next"},
    NodeType.SURVEY: {"prompts", "timeout", "retries", "next"},
    NodeType.HANGUP: {"prompts"},
}
_REQUIRED: dict[NodeType, set[str]] = {
    NodeType.PLAY: {"prompts", "next"},
    NodeType.MENU: {"prompts", "options", "on_fail"},
    NodeType.COLLECT: {"prompts", "var", "next", "on_fail"},
    NodeType.LOOKUP: {"query", "found", "not_found"},
    NodeType.CONDITION: {"test", "then", "else"},
    NodeType.LANGUAGE: {"prompts", "options", "next"},
    NodeType.QUEUE: {"queue"},
    NodeType.EXTENSION: {"extension"},
    NodeType.VOICEMAIL: {"mailbox"},
    NodeType.MESSAGE: {"prompts", "ticket_type", "next"},
    NodeType.CALLBACK: {"queue", "next"},
    NodeType.SURVEY: {"prompts", "next"},
    NodeType.HANGUP: set(),
}


def parse_flow(data: dict[str, Any] | str, *, prompt_exists: Callable[[str], bool] | None = None) -> Flow:
    """A checked `Flow` from its JSON object (or text); FlowError lists every problem.
    `prompt_exists(name)` (optional) says whether a prompt has a sound file."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise FlowError([f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    if not isinstance(data, dict):
        raise FlowError(["a flow is a JSON object"])
    problems: list[str] = []
    unknown = set(data) - {"name", "version", "start", "language", "nodes", "description"}
    if unknown:
        problems.append(f"unknown flow keys {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("name: required text")
        name = ""
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append("version: a whole number from 1")
        version = 1
    language = data.get("language", "zh-CN")
    if language not in LANGUAGES:
        problems.append(f"language: one of {list(LANGUAGES)}")
        language = "zh-CN"
    raw_nodes = data.get("nodes")
    nodes: dict[str, Node] = {}
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.append("nodes: an object of at least one node")
        raw_nodes = {}
    for node_id, raw in raw_nodes.items():
        node = _parse_node(str(node_id), raw, problems, prompt_exists)
        if node is not None:
            nodes[node.id] = node
    start = data.get("start")
    if start not in raw_nodes:
        problems.append(f"start: {start!r} is not a node")
    for node in nodes.values():
        for target in node.successors():
            if target not in raw_nodes:
                problems.append(f"{node.id}: goes to {target!r}, which is not a node")
    if not problems:
        unreachable = set(nodes) - _reachable(start, nodes)
        if unreachable:
            problems.append(f"nodes never reached from {start!r}: {sorted(unreachable)}")
    if problems:
        raise FlowError(problems)
    return Flow(name=name, version=version, start=start, language=language, nodes=nodes, raw=data)


def _reachable(start: str, nodes: dict[str, Node]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in nodes[todo.pop()].successors():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _parse_node(node_id: str, raw: Any, problems: list[str],
                prompt_exists: Callable[[str], bool] | None) -> Node | None:
    where = f"{node_id}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: a node is an object")
        return None
    try:
        kind = NodeType(raw.get("type"))
    except ValueError:
        problems.append(f"{where}: type must be one of {[t.value for t in NodeType]}")
        return None
    before = len(problems)
    allowed = _FIELDS[kind] | {"type", "label"}
    unknown = set(raw) - allowed
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)} for a {kind.value} node")
    missing = _REQUIRED[kind] - set(raw)
    if missing:
        problems.append(f"{where}: missing {sorted(missing)}")

    def text(key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            problems.append(f"{where}.{key}: text required")
            return None
        return str(value)

    def number(key: str, default: float, low: float, high: float, *, whole: bool = False) -> Any:
        value = raw.get(key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        if ok and whole and value != int(value):
            ok = False
        if not ok:
            problems.append(f"{where}.{key}: a {'whole ' if whole else ''}number from {low} to {high}")
            return default
        return int(value) if whole else float(value)

    prompts = _prompts(raw.get("prompts", []), f"{where}.prompts", problems, prompt_exists)
    options: dict[str, str] = {}
    raw_options = raw.get("options", {})
    if not isinstance(raw_options, dict):
        problems.append(f"{where}.options: an object of key -> target")
        raw_options = {}
    for key, value in raw_options.items():
        if key not in KEYS:
            problems.append(f"{where}.options: {key!r} is not a phone key")
        elif kind is NodeType.LANGUAGE and value not in LANGUAGES:
            problems.append(f"{where}.options[{key}]: language must be one of {list(LANGUAGES)}")
        elif not isinstance(value, str):
            problems.append(f"{where}.options[{key}]: a node id")
        else:
            options[key] = value
    terminator = raw.get("terminator", "#")
    if terminator not in ("#", "*", ""):
        problems.append(f"{where}.terminator: '#', '*' or '' (none)")
    min_digits = number("min", 1, 1, 32, whole=True)
    max_digits = number("max", 20, 1, 32, whole=True)
    if max_digits < min_digits:
        problems.append(f"{where}: max ({max_digits}) below min ({min_digits})")
    query = text("query")
    if query is not None and query not in LOOKUPS:
        problems.append(f"{where}.query: one of {list(LOOKUPS)}")
    test = text("test")
    if test is not None and test not in TESTS:
        problems.append(f"{where}.test: one of {list(TESTS)}")
    if test in ("time", "vip", "var", "language") and not raw.get("argument"):
        problems.append(f"{where}.argument: the {test} test needs an argument")
    skills = raw.get("skills", {})
    if not isinstance(skills, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100
            for k, v in skills.items()):
        problems.append(f"{where}.skills: an object of skill -> level 0-100")
        skills = {}
    target = text("queue") or text("extension") or text("mailbox") or text("ticket_type")
    node = Node(
        id=node_id, type=kind, prompts=prompts, next=text("next"), options=options,
        timeout=number("timeout", 5.0, 1, 60), retries=number("retries", 3, 1, 9, whole=True),
        invalid_prompts=_prompts(raw.get("invalid_prompts", []), f"{where}.invalid_prompts", problems, prompt_exists),
        timeout_prompts=_prompts(raw.get("timeout_prompts", []), f"{where}.timeout_prompts", problems, prompt_exists),
        on_fail=text("on_fail"), var=text("var"), min_digits=min_digits, max_digits=max_digits,
        terminator=terminator if isinstance(terminator, str) else "#", query=query,
        found=text("found"), not_found=text("not_found"), test=test, argument=text("argument"),
        then=text("then"), otherwise=text("else"), target=target, skills=dict(skills),
        max_seconds=number("max_seconds", 120, 5, 600, whole=True),
    )
    return node if len(problems) == before else None


def _prompts(raw: Any, where: str, problems: list[str],
             prompt_exists: Callable[[str], bool] | None) -> tuple[PromptItem, ...]:
    if not isinstance(raw, list):
        problems.append(f"{where}: a list of prompt names and read-outs")
        return ()
    out: list[PromptItem] = []
    for item in raw:
        if isinstance(item, str) and item.strip():
            if prompt_exists is not None and not prompt_exists(item):
                problems.append(f"{where}: no sound file for prompt {item!r}")
            out.append(item)
        elif isinstance(item, dict) and set(item) == {"say", "var"} and item["say"] in SAY_KINDS \
                and isinstance(item["var"], str) and item["var"]:
            out.append(Say(item["say"], item["var"]))
        else:
            problems.append(f"{where}: {item!r} is neither a prompt name nor "
                            f"{{\"say\": one of {list(SAY_KINDS)}, \"var\": name}}")
    return tuple(out)


def prompt_names(flow: Flow) -> Iterable[str]:
    """Every recorded prompt the flow names (not the read-outs)."""
    for node in flow.nodes.values():
        for item in (*node.prompts, *node.invalid_prompts, *node.timeout_prompts):
            if isinstance(item, str):
                yield item
