"""Run baresip (Debian's baresip-core) as a real SIP phone: for tests and benches."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


class Baresip:
    """One baresip user agent with its own config directory.

    `source` is a WAV it sends as its microphone; what it receives is dumped decoded to
    `dump-*-dec.wav` in its directory (module sndfile). `sip_port` fixes the port it sends
    and listens on (0: any free one), for a phone that plays a provider's trunk, which the
    server knows by its source address and port (`ip_auth`)."""

    def __init__(self, directory: Path, account: str, *, source: Path | None = None,
                 ctrl_port: int | None = None, sip_port: int = 0) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method\tepoll",
            f"sip_listen\t127.0.0.1:{sip_port}",
            "module_path\t/usr/lib/baresip/modules",
            "module\tg711.so",
            "module_app\taccount.so",
            "module_app\tmenu.so",
        ]
        if source is not None:
            lines += ["module\taufile.so", "module\tsndfile.so",
                      f"audio_source\taufile,{source}", f"audio_player\taufile,{self.dir / 'play.wav'}",
                      f"audio_alert\taufile,{self.dir / 'alert.wav'}", f"snd_path\t{self.dir}"]
        else:
            lines += ["audio_player\tnone", "audio_source\tnone", "audio_alert\tnone"]
        if ctrl_port is not None:
            # Module ctrl_tcp: commands and call events as netstring-framed JSON (see BaresipControl).
            lines += ["module_app\tctrl_tcp.so", f"ctrl_tcp_listen\t127.0.0.1:{ctrl_port}"]
        self.ctrl_port = ctrl_port
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        (self.dir / "accounts").write_text(account + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, quit_after: int, commands: list[str] | None = None) -> None:
        cmd = [shutil.which("baresip") or "baresip", "-f", str(self.dir), "-t", str(quit_after)]
        for command in commands or []:
            cmd += ["-e", command]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait(self, timeout: float) -> str:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out.decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def received_audio(self) -> Path | None:
        dumps = sorted(self.dir.glob("dump-*-dec.wav"))
        return dumps[-1] if dumps else None


class BaresipControl:
    """A connection to a running baresip's ctrl_tcp module: menu commands in (`hold`, `resume`,
    `transfer`, `dial`, `hangup`, ...), responses and UA events (CALL_ESTABLISHED, CALL_CLOSED,
    REGISTER_OK, ...) out, each a netstring (`<length>:<JSON>,`)."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._buf = b""
        self._tokens = 0
        #: Every event received so far, in order (each a dict with "type", "param", ...).
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self.sock.close()

    def command(self, command: str, params: str = "", timeout: float = 10.0) -> dict[str, Any]:
        """Run one command and return baresip's response ("ok", "data")."""
        self._tokens += 1
        token = str(self._tokens)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("response") and message.get("token") == token:
                return message

    def wait_event(self, kind: str, timeout: float = 10.0, *, after: int = 0) -> dict[str, Any]:
        """The first event of type `kind` (e.g. "CALL_ESTABLISHED") among those from index
        `after` on, waiting for it if it has not come yet."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for event in self.events[seen:]:
                if event.get("type") == kind:
                    return event
            seen = max(seen, len(self.events))
            self._next(deadline)

    def _next(self, deadline: float) -> dict[str, Any]:
        while True:
            head, colon, rest = self._buf.partition(b":")
            if colon and head.isdigit() and len(rest) > int(head):
                length = int(head)
                payload, self._buf = rest[:length], rest[length + 1:]
                message: dict[str, Any] = json.loads(payload)
                if message.get("event"):
                    self.events.append(message)
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"baresip said nothing in time; events so far: {self.events}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("baresip closed its control connection")
            self._buf += chunk
