"""Signing out everywhere (issue #6): from one's profile, out of all other sessions (the current
one stays) or out of every session; an administrator ends all of a user's sessions from the
users screen; a changed password ends the other sessions. Each is audited."""

from __future__ import annotations

from pathlib import Path

from crm import audit
from crm.access import SYSTEM
from tests.webui.page_harness import csrf_of, make_site, page_csrf, running, sign_in


def signed_in(client) -> bool:
    response = client.get("/profile")
    return response.status_code == 200


def ended_entries(site, username: str) -> list[dict]:
    entries = site.run(audit.list_entries(site.crm.db, SYSTEM, entity="user", entity_id=site.ids[username]))
    return [e.after for e in entries if e.action == "end_sessions"]


def test_one_session_ends_the_others_and_keeps_itself(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as laptop:
        sign_in(laptop, "agent1")
        phone = site.client("10.0.0.8")
        sign_in(phone, "agent1", headers={"User-Agent": "PhoneBrowser/1.0"})
        other_user = site.client()
        sign_in(other_user, "sup")
        profile = laptop.get("/profile").text
        assert profile.count("<tr") == 3 and "PhoneBrowser/1.0" in profile and "10.0.0.8" in profile
        ended = laptop.post("/profile/sessions/end-others", data={"csrf": csrf_of(profile)})
        assert ended.status_code == 303 and ended.headers["location"] == "/profile?ended=1"
        assert "已退出 1 个其他会话" in laptop.get(ended.headers["location"]).text
        assert signed_in(laptop) and not signed_in(phone)
        assert phone.get("/").headers["location"] == "/login"
        assert signed_in(other_user)                                   # someone else's session stays
        assert ended_entries(site, "agent1") == [{"sessions": "others", "ended": 1}]


def test_sign_out_everywhere_includes_this_session(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as laptop:
        sign_in(laptop, "agent1")
        phone = site.client()
        sign_in(phone, "agent1")
        assert laptop.post("/profile/sessions/end-all", data={}).status_code == 403   # CSRF needed
        out = phone.post("/profile/sessions/end-all", data={"csrf": page_csrf(phone)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert not signed_in(laptop) and not signed_in(phone)
        assert ended_entries(site, "agent1") == [{"sessions": "all", "ended": 2}]


def test_an_administrator_ends_a_users_sessions(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")
        desks = [site.client(), site.client("10.1.1.1")]
        for desk in desks:
            sign_in(desk, "agent1")
        agent_id = site.ids["agent1"]
        users = admin.get("/admin/users").text
        assert f"/admin/users/{agent_id}/sessions/end" in users
        assert admin.post(f"/admin/users/{agent_id}/sessions/end", data={"csrf": "forged"}).status_code == 403
        assert all(signed_in(d) for d in desks)
        ended = admin.post(f"/admin/users/{agent_id}/sessions/end", data={"csrf": csrf_of(users)})
        assert ended.status_code == 303 and ended.headers["location"] == "/admin/users?ended=2"
        assert "已结束 2 个会话" in admin.get("/admin/users?ended=2").text
        assert not any(signed_in(d) for d in desks) and signed_in(admin)
        assert ended_entries(site, "agent1") == [{"sessions": "all", "ended": 2}]
        assert admin.post("/admin/users/9999/sessions/end", data={"csrf": csrf_of(users)}).status_code == 404

        sup = site.client()                                           # org.read only: sees, cannot end
        sign_in(sup, "sup")
        assert f"/admin/users/{agent_id}/sessions/end" not in sup.get("/admin/users").text
        sign_in(desks[0], "agent1")
        assert sup.post(f"/admin/users/{agent_id}/sessions/end",
                        data={"csrf": page_csrf(sup, "/admin/users")}).status_code == 403  # fmt: skip
        assert signed_in(desks[0])


def test_a_changed_password_ends_the_other_sessions(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as laptop:
        sign_in(laptop, "agent1")
        phone = site.client()
        sign_in(phone, "agent1")
        csrf = page_csrf(laptop)
        wrong = laptop.post("/profile/password", data={"csrf": csrf, "old_password": "nope-nope",
                                                       "new_password": "new-secret-1", "confirm_password": "new-secret-1"})
        assert wrong.status_code == 403 and "当前密码不正确" in wrong.text
        mismatch = laptop.post("/profile/password", data={"csrf": csrf, "old_password": "secret-pass",
                                                          "new_password": "new-secret-1", "confirm_password": "other"})
        assert mismatch.status_code == 422 and "两次输入的新密码不一致" in mismatch.text
        assert signed_in(phone)
        changed = laptop.post("/profile/password", data={"csrf": csrf, "old_password": "secret-pass",
                                                         "new_password": "new-secret-1", "confirm_password": "new-secret-1"})
        assert changed.status_code == 303
        assert signed_in(laptop) and not signed_in(phone)
        assert sign_in(site.client(), "agent1", "secret-pass").status_code == 401
        assert sign_in(site.client(), "agent1", "new-secret-1").status_code == 303
        assert ended_entries(site, "agent1") == [{"sessions": "others", "ended": 1}]
