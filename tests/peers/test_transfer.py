"""Transfers with real phones (SIPp): blind transfer by REFER (RFC 3515), and attended transfer
with Replaces (RFC 3891), from a bridged call's caller: the callee ends up talking to the target
(audio checked both ways), the transferor is told how it went and hung up."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from bench.sipp import SippResult
from sipstack.errors import SipParseError
from sipstack.session import Replaces
from sipstack.uri import NameAddr
from tests.peers.test_calls import RtpPeer, dominant_frequency, sdp_port_sent, tone
from tests.peers.test_dialplan import Site, site_fixture

pytestmark = pytest.mark.peers

# One server for the module; each test has extensions of its own.
site = site_fixture("")


@pytest.fixture(autouse=True)
def _phones_hung_up(site: Site) -> Iterator[None]:
    yield
    site.hang_up_phones()


def test_a_replaces_in_a_refer_to_uri_names_a_dialog() -> None:
    # RFC 3891 §6.1 with the escaping RFC 3515 §2.1 needs inside a URI's headers.
    uri = NameAddr.parse("<sip:1003@pbx.example?Replaces=12345%40192.0.2.1%3Bto-tag%3D7743%3Bfrom-tag%3D6472"
                         "%3Bearly-only>").uri
    replaces = Replaces.parse(uri.headers["Replaces"])  # type: ignore[union-attr]
    assert replaces == Replaces("12345@192.0.2.1", "7743", "6472", early_only=True)
    for bad in ("12345@192.0.2.1;to-tag=7743", ";to-tag=1;from-tag=2", ""):
        with pytest.raises(SipParseError):
            Replaces.parse(bad)


def talk_once_rung(site: Site, pairs: list[tuple[RtpPeer, str, float]], stop: threading.Event) -> None:
    """Each RtpPeer talks (a tone) to the engine port the server offered its extension, as soon
    as the server has sent the INVITEs to all of them."""
    deadline = time.monotonic() + 15
    ports: list[int | None] = [None] * len(pairs)
    while time.monotonic() < deadline and not all(ports):
        log = site.log()
        ports = [sdp_port_sent(log, f"INVITE sip:{extension}@") for _, extension, _ in pairs]
        time.sleep(0.02)
    assert all(ports), site.log()
    talkers = [threading.Thread(target=peer.talk, args=(("127.0.0.1", port), tone(freq, 75), stop))
               for (peer, _, freq), port in zip(pairs, ports, strict=True)]
    for t in talkers:
        t.start()
    for t in talkers:
        t.join(timeout=10)


def test_blind_transfer_by_the_caller_bridges_the_callee_with_the_target(site: Site) -> None:
    callee_rtp, target_rtp = RtpPeer(), RtpPeer()
    stop = threading.Event()
    site.phone("1002", "uas_answer.xml", callee_rtp.port)                             # stays to the end
    site.phone("1003", "refer_target_bye.xml", target_rtp.port, extra=["-d", "2000"])  # talks 2 s, hangs up
    results: dict[str, SippResult] = {}
    transferor = threading.Thread(target=lambda: results.setdefault("transferor", site.dial(
        "1001", "1002", "refer_blind_uac.xml", talk_ms=500, keys={"target": "1003"})))
    transferor.start()
    try:
        # Once the target is rung, both stayers talk: each must hear the other after the answer.
        talk_once_rung(site, [(callee_rtp, "1002", 440), (target_rtp, "1003", 1000)], stop)
    finally:
        stop.set()
        transferor.join(timeout=40)
    # 202, NOTIFY 100 Trying (active), NOTIFY 200 OK (terminated), then the server's BYE.
    assert results["transferor"].successful == 1, results["transferor"].output
    assert site.phone_result("1003").successful == 1
    # The target's BYE ended the call: the callee who stayed got the server's BYE.
    assert site.phone_result("1002").successful == 1
    # The callee and the target heard each other (most of 1.5 s; the start went to ringing).
    assert len(target_rtp.received) >= 40 and len(callee_rtp.received) >= 40
    assert abs(dominant_frequency(target_rtp.received) - 440) < 10
    assert abs(dominant_frequency(callee_rtp.received) - 1000) < 10
    # One call, two segments: 1001 with 1002 until the transfer, then 1002's call to 1003 (as if
    # the staying party had dialled it) until the target hung up.
    first, second = site.cdrs("1001", 2)
    assert first["call_id"] == second["call_id"] and (first["segment"], second["segment"]) == (1, 2)
    assert (first["caller"], first["callee"], first["answered_by"], first["hangup_side"], first["hangup_cause"]) == (
        "1001", "1002", "1002", "caller", "blind transfer")
    assert (second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        "1002", "1003", "1003", "callee")
    # The second segment starts when the first ends (the REFER), and is answered when 1003 answers.
    assert first["ended_at"] == second["started_at"] < second["answered_at"] and second["billsec"] > 1


def test_blind_transfer_by_the_callee_bridges_the_caller_with_the_target(site: Site) -> None:
    site.phone("1005", "refer_blind_uas.xml", extra=["-d", "300", "-key", "target", "1006"])
    site.phone("1006", "uas_answer.xml")   # the target, on the call until the caller hangs up
    caller = site.dial("1004", "1005", talk_ms=2000)
    assert caller.successful == 1, caller.output
    assert site.phone_result("1005").successful == 1   # 202, NOTIFY 100, NOTIFY 200, our BYE
    assert site.phone_result("1006").successful == 1   # the caller's BYE reached the target
    first, second = site.cdrs("1004", 2)
    assert (first["caller"], first["callee"], first["hangup_side"], first["hangup_cause"]) == (
        "1004", "1005", "callee", "blind transfer")
    assert (second["segment"], second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        2, "1004", "1006", "1006", "caller")


def sent_messages(log: str, first_line: str) -> list[str]:
    """The messages the server sent (its SIP trace) that start with `first_line`."""
    found = []
    for block in log.split("sipstack.trace: send ")[1:]:
        block = re.split(r"^\d{4}-\d\d-\d\d \d\d:", block, maxsplit=1, flags=re.M)[0]  # this record only
        message = block.split("\n", 1)[1] if "\n" in block else ""
        if message.startswith(first_line):
            found.append(message)
    return found


def answered_dialog(log: str, callee: str) -> tuple[str, str, str] | None:
    """Call-ID, our To tag and the caller's From tag of the 200 OK the server sent for a call
    to `callee` (the dialog a Replaces names, as the caller sees it)."""
    for message in sent_messages(log, "SIP/2.0 200 OK"):
        if not re.search(r"^CSeq: \d+ INVITE", message, re.M):
            continue
        to = re.search(rf"^To: <sip:{callee}@[^>]*>;tag=(\S+)", message, re.M)
        frm = re.search(r"^From: [^\n]*;tag=(\S+)", message, re.M)
        call_id = re.search(r"^Call-ID: (\S+)", message, re.M)
        if to and frm and call_id:
            return call_id.group(1), to.group(1), frm.group(1)
    return None


def attended_transfer(site: Site, callee: RtpPeer, target: RtpPeer, tones: tuple[float, float],
                      target_hold_ms: int) -> dict[str, SippResult]:
    """1007 calls the callee 1008 and the target 1009, then transfers 1008 to 1009 (REFER with
    Replaces naming its second call); the callee and target phones talk `tones` once rung.
    Returns the SIPp results of the transferor's two calls ("transferor", "consult")."""
    stop = threading.Event()
    results: dict[str, SippResult] = {}
    site.phone("1008", "uas_answer.xml", callee.port)
    site.phone("1009", "refer_target_bye.xml", target.port, extra=["-d", str(target_hold_ms)])
    # 1007's second call, to the target: it ends when the server hangs it up.
    consult = threading.Thread(target=lambda: results.setdefault("consult", site.dial(
        "1007", "1009", "refer_replaced_uac.xml")))
    consult.start()
    transferor: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 15
        dialog = None
        while dialog is None and time.monotonic() < deadline:
            dialog = answered_dialog(site.log(), "1009")
            time.sleep(0.02)
        assert dialog, site.log()
        call_id, to_tag, from_tag = dialog
        replaces = quote(f"{call_id};to-tag={to_tag};from-tag={from_tag}", safe="")
        # 1007's first call, to the callee; then the REFER replacing the second call.
        transferor = threading.Thread(target=lambda: results.setdefault("transferor", site.dial(
            "1007", "1008", "refer_attended_uac.xml", talk_ms=300, keys={"target": "1009", "replaces": replaces})))
        transferor.start()
        talk_once_rung(site, [(callee, "1008", tones[0]), (target, "1009", tones[1])], stop)
    finally:
        stop.set()
        for thread in (consult, transferor):
            if thread is not None:
                thread.join(timeout=40)
    return results


def test_attended_transfer_joins_the_callee_with_the_transferors_other_call(site: Site) -> None:
    callee_rtp, target_rtp = RtpPeer(), RtpPeer()
    results = attended_transfer(site, callee_rtp, target_rtp, (440, 1000), target_hold_ms=3000)
    assert results["transferor"].successful == 1, results["transferor"].output
    assert results["consult"].successful == 1, results["consult"].output   # the server's BYE
    assert site.phone_result("1009").successful == 1
    assert site.phone_result("1008").successful == 1
    # After the transfer the callee hears the target and the target the callee.
    assert len(target_rtp.received) >= 25 and len(callee_rtp.received) >= 25
    assert abs(dominant_frequency(target_rtp.received[-25:]) - 440) < 10
    assert abs(dominant_frequency(callee_rtp.received) - 1000) < 10
    cdrs = site.cdrs("1007", 3)
    [consulted] = [c for c in cdrs if c["callee"] == "1009"]
    assert (consulted["caller"], consulted["hangup_cause"]) == ("1007", "transferred")
    first, second = sorted((c for c in cdrs if c["call_id"] != consulted["call_id"]), key=lambda c: c["segment"])
    assert (first["caller"], first["callee"], first["hangup_cause"]) == ("1007", "1008", "attended transfer")
    assert (second["segment"], second["caller"], second["callee"], second["answered_by"]) == (2, "1009", "1008", "1009")


def test_a_transfer_to_nowhere_is_reported_and_the_call_goes_on(site: Site) -> None:
    site.phone("1011", "uas_answer.xml")
    # 7777 is no extension: NOTIFY "SIP/2.0 404 Not Found", and the two stay connected until
    # the caller hangs up.
    caller = site.dial("1010", "1011", "refer_failed_uac.xml", talk_ms=300, keys={"target": "7777"})
    assert caller.successful == 1, caller.output
    assert site.phone_result("1011").successful == 1
    finals = [m for m in sent_messages(site.log(), "NOTIFY ") if "terminated" in m and "1010@" in m]
    assert len(finals) == 1 and finals[0].rstrip().endswith("SIP/2.0 404 Not Found")   # the sipfrag body
    [cdr] = site.cdrs("1010", 1)
    assert (cdr["disposition"], cdr["hangup_side"], cdr["hangup_cause"]) == ("ANSWERED", "caller", "normal")
