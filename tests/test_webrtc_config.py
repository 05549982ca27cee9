"""`[webrtc]` in the configuration file: where browser agents' media runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.config import ConfigError, load_config


def test_workers_default_to_one_per_cpu_and_can_be_set_or_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "callcenter.toml"
    path.write_text("")
    assert load_config(path).webrtc.workers is None   # the pool sizes itself: one per CPU
    assert load_config(path).webrtc.worker_nice == 5
    path.write_text("[webrtc]\nworkers = 0\nworker_nice = 0\n")
    config = load_config(path)
    assert config.webrtc.workers == 0 and config.webrtc.worker_nice == 0


@pytest.mark.parametrize("table", ["workers = -1", "workers = 65", "workers = true", 'workers = "auto"',
                                   "worker_nice = 20", "worker_nice = -1", "worker_nice = true", "threads = 2"])
def test_bad_webrtc_settings_are_refused_with_the_reason(tmp_path: Path, table: str) -> None:
    path = tmp_path / "callcenter.toml"
    path.write_text(f"[webrtc]\n{table}\n")
    with pytest.raises(ConfigError, match="webrtc|threads"):
        load_config(path)


def test_ice_servers_reach_the_browser_settings(tmp_path: Path) -> None:
    path = tmp_path / "callcenter.toml"
    path.write_text('[[webrtc.ice_servers]]\nurls = "stun:stun.example.cn:3478"\n'
                    '[[webrtc.ice_servers]]\nurls = ["turn:turn.example.cn:3478?transport=udp"]\n'
                    'username = "agent"\ncredential = "s3cret"\n')
    servers = load_config(path).webrtc.settings().ice_servers
    assert [s.to_browser() for s in servers] == [
        {"urls": ["stun:stun.example.cn:3478"]},
        {"urls": ["turn:turn.example.cn:3478?transport=udp"], "username": "agent", "credential": "s3cret"}]


@pytest.mark.parametrize("table", ['urls = "http://stun.example.cn"', 'urls = "turn:turn.example.cn:3478"',
                                   "urls = 3", 'urls = "stun:a:1"\nport = 3478'])
def test_unusable_ice_servers_are_refused_with_the_reason(tmp_path: Path, table: str) -> None:
    path = tmp_path / "callcenter.toml"
    path.write_text(f"[[webrtc.ice_servers]]\n{table}\n")
    with pytest.raises(ConfigError, match=r"ice_servers\]\] #1"):
        load_config(path)
