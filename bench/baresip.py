"""Run baresip (Debian's baresip-core) as a real SIP phone: for tests and benches."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class Baresip:
    """One baresip user agent with its own config directory.

    `source` is a WAV it sends as its microphone; what it receives is dumped decoded to
    `dump-*-dec.wav` in its directory (module sndfile)."""

    def __init__(self, directory: Path, account: str, *, source: Path | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method\tepoll",
            "sip_listen\t127.0.0.1:0",
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
