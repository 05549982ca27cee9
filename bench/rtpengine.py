"""rtpengine as a reference relay for `python -m bench media --rtpengine`.

Starts the Debian `rtpengine` daemon on loopback with userspace forwarding only (`--table=-1`:
no kernel module, the configuration a container or a stock host gets) and drives it over its
`ng` control protocol (a cookie, a space and a bencoded dictionary, over UDP) the way a SIP
proxy would: one offer and one answer per call. The generator's ports are only known after it
has been told where to send, so calls are offered with placeholder ports and rtpengine learns
the real ones from the first packets (`--endpoint-learning=immediate`, its NAT behaviour).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

# -- bencode (BEP 3): what the ng protocol speaks ------------------------------------------------


def bencode(value: object) -> bytes:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> object:
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after the bencoded value")
    return value


def _decode(data: bytes, i: int) -> tuple[object, int]:
    lead = data[i:i + 1]
    if lead == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if lead in (b"l", b"d"):
        i += 1
        items = []
        while data[i:i + 1] != b"e":
            item, i = _decode(data, i)
            items.append(item)
        if lead == b"l":
            return items, i + 1
        return {items[k].decode(): items[k + 1] for k in range(0, len(items), 2)}, i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


# -- the daemon ------------------------------------------------------------------------------------


def _sdp(host: str, port: int, session: int) -> str:
    return (f"v=0\r\no=- {session} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def _media_port(sdp: bytes) -> int:
    found = re.search(rb"^m=audio (\d+) ", sdp, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"rtpengine answered an SDP without audio: {sdp!r}")
    return int(found.group(1))


class RtpEngine:
    """One rtpengine process on loopback and an ng client for it."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ng_port = 0
        self._log = tempfile.NamedTemporaryFile(prefix="rtpengine-", suffix=".log", delete=False)  # noqa: SIM115

    @staticmethod
    def available() -> str | None:
        return shutil.which("rtpengine")

    async def start(self) -> None:
        binary = self.available()
        if binary is None:
            raise RuntimeError("rtpengine is not installed (Debian: apt-get install rtpengine-daemon)")
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((self.host, 0))
        self._ng_port = probe.getsockname()[1]
        probe.close()
        self.proc = await asyncio.create_subprocess_exec(
            binary, "--foreground", "--log-stderr", "--table=-1", f"--interface={self.host}",
            f"--listen-ng={self.host}:{self._ng_port}", f"--port-min={self.port_min}",
            f"--port-max={self.port_max}", "--log-level=4", "--endpoint-learning=immediate", f"--num-threads={os.cpu_count() or 2}",
            stdout=self._log, stderr=self._log, stdin=asyncio.subprocess.DEVNULL)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect((self.host, self._ng_port))
        self._sock.settimeout(0.5)
        for _ in range(40):                  # ping until the control socket answers
            try:
                if (await self.command({"command": "ping"})).get("result") == b"pong":
                    return
            except (TimeoutError, ConnectionRefusedError):
                await asyncio.sleep(0.1)
        raise RuntimeError(f"rtpengine did not answer on its ng port; log: {self._log.name}")

    async def command(self, body: dict) -> dict:
        assert self._sock is not None
        cookie = secrets.token_hex(6).encode()
        self._sock.send(cookie + b" " + bencode(body))
        while True:
            reply = await asyncio.to_thread(self._sock.recv, 65536)
            head, _, rest = reply.partition(b" ")
            if head == cookie:
                answer = bdecode(rest)
                assert isinstance(answer, dict)
                if answer.get("result") not in (b"ok", b"pong"):
                    raise RuntimeError(f"rtpengine refused {body.get('command')}: {answer}")
                return answer

    async def call(self, call_id: str, a_port: int, b_port: int) -> tuple[int, int]:
        """Offer/answer one call between the generator's A port and B port; returns rtpengine's
        (port facing A, port facing B)."""
        common = {"call-id": call_id, "from-tag": "a", "flags": ["trust-address"], "replace": ["origin"]}
        offer = await self.command({"command": "offer", "sdp": _sdp(self.host, a_port, 1), **common})
        facing_b = _media_port(offer["sdp"])
        answer = await self.command({"command": "answer", "to-tag": "b", "sdp": _sdp(self.host, b_port, 2),
                                     **common})
        return _media_port(answer["sdp"]), facing_b

    async def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
