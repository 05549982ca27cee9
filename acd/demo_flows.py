"""The demo's main IVR (number 5000): the self-service of the seed documents — points balance,
booking hand-off, store hours, offers, a complaint message that becomes a ticket, an agent."""

from __future__ import annotations

from typing import Any

MAIN_IVR: dict[str, Any] = {
    "name": "main",
    "description": "美颜连锁 main menu / main menu of the demo beauty chain",
    "start": "language",
    "language": "zh-CN",
    "nodes": {
        "language": {"type": "language", "prompts": ["ivr/choose-language"], "options": {"1": "zh-CN", "2": "en"},
                     "timeout": 3, "retries": 1, "next": "welcome"},
        "welcome": {"type": "play", "prompts": ["ivr/welcome", "ivr/recorded-notice"], "next": "hours"},
        "hours": {"type": "condition", "test": "time", "argument": "office", "then": "menu", "else": "closed"},
        "closed": {"type": "play", "prompts": ["ivr/closed"], "next": "complaint"},
        "menu": {"type": "menu", "prompts": ["ivr/main-menu"],
                 "options": {"1": "points", "2": "booking", "3": "stores", "4": "offers", "5": "complaint",
                             "0": "agent"},
                 "timeout": 6, "retries": 3, "invalid_prompts": ["ivr/invalid"], "timeout_prompts": ["ivr/no-input"],
                 "on_fail": "agent"},
        "points": {"type": "lookup", "query": "member_points", "found": "say-points", "not_found": "ask-member"},
        "ask-member": {"type": "collect", "prompts": ["ivr/enter-member-number"], "var": "member_no", "min": 4,
                       "max": 15, "timeout": 6, "retries": 2, "invalid_prompts": ["ivr/invalid"],
                       "next": "points-by-number", "on_fail": "menu"},
        "points-by-number": {"type": "lookup", "query": "member_points", "var": "member_no", "found": "say-points",
                             "not_found": "not-found"},
        "not-found": {"type": "play", "prompts": ["ivr/member-not-found"], "next": "menu"},
        "say-points": {"type": "play", "prompts": ["ivr/your-points", {"say": "number", "var": "points"},
                                                   "ivr/points"], "next": "menu"},
        "booking": {"type": "queue", "prompts": ["ivr/booking-transfer"], "queue": "8001"},
        "stores": {"type": "play", "prompts": ["ivr/store-hours"], "next": "menu"},
        "offers": {"type": "play", "prompts": ["ivr/promotions"], "next": "menu"},
        "complaint": {"type": "message", "prompts": ["ivr/leave-message"], "ticket_type": "complaint",
                      "max_seconds": 120, "next": "check-saved"},
        # Never claim a message was kept when the recording failed: hand the caller to a person.
        "check-saved": {"type": "condition", "test": "var", "argument": "message_saved=1", "then": "saved",
                        "else": "agent"},
        "saved": {"type": "play", "prompts": ["ivr/message-saved"], "next": "bye"},
        "agent": {"type": "condition", "test": "vip", "argument": "3", "then": "agent-vip", "else": "agent-service"},
        "agent-vip": {"type": "queue", "prompts": ["ivr/transfer-agent"], "queue": "8002", "skills": {"vip": 1}},
        "agent-service": {"type": "queue", "prompts": ["ivr/transfer-agent"], "queue": "8002"},
        "bye": {"type": "hangup", "prompts": ["ivr/goodbye"]},
    },
}

# Asked after an agent hangs up when the caller chose to rate the call (the survey transfer).
SURVEY_IVR: dict[str, Any] = {
    "name": "survey",
    "start": "rate",
    "language": "zh-CN",
    "nodes": {
        "rate": {"type": "survey", "prompts": ["ivr/rate-us"], "timeout": 8, "retries": 2, "next": "thanks"},
        "thanks": {"type": "hangup", "prompts": ["ivr/thanks-rating"]},
    },
}

DEMO_FLOWS = (MAIN_IVR, SURVEY_IVR)
