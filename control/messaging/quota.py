"""The quota ledger (Q-0 … Q-3): per recipient (customer or group) one row with the counts
of its current periods — member sends today (``md``), enterprise sends this month (``em``)
and today (``ed``) — so either quota model can be answered from it (Q-0). A count holds
reservations and settled sends alike; a reservation given back (cancelled, failed, not
sendable) takes its count back if its period is still the current one.

Profiles: ``seed`` (default; Q-1 member 1 a day, Q-2 enterprise 4 a month, counted
separately, Q-3 the same for groups) and ``daily-total`` (1 a day in total, either kind)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from scrm_fast.errors import InputError
from scrm_fast.storage import AppTxn

TZ = ZoneInfo("Asia/Shanghai")
PROFILES = ("seed", "daily-total")
MEMBER_PER_DAY = 1
ENTERPRISE_PER_MONTH = 4
TOTAL_PER_DAY = 1


def periods(ms: int) -> tuple[str, str]:
    d = datetime.fromtimestamp(ms / 1000, TZ).date()
    return d.isoformat(), d.isoformat()[:7]


def _cur(row: dict | None, field: str, period: str) -> int:
    v = (row or {}).get(field)
    return v[1] if v and v[0] == period else 0


def verdict(row: dict | None, kind: str, profile: str, day: str, month: str, group: bool) -> str | None:
    """None when one more ``kind`` send may reach the recipient, else the rule that refuses."""
    md, em, ed = _cur(row, "md", day), _cur(row, "em", month), _cur(row, "ed", day)
    if profile == "daily-total":
        return "Q-0" if md + ed >= TOTAL_PER_DAY else None
    if kind == "member":
        return ("Q-3" if group else "Q-1") if md >= MEMBER_PER_DAY else None
    return ("Q-3" if group else "Q-2") if em >= ENTERPRISE_PER_MONTH else None


def bump(row: dict | None, kind: str, day: str, month: str, by: int) -> dict:
    row = dict(row or {})

    def add(field, period):
        cur = row.get(field)
        n = (cur[1] if cur and cur[0] == period else 0) + by
        if by < 0 and not (cur and cur[0] == period):
            return  # the period has passed: nothing to give back
        if n < 0:
            raise AssertionError(f"a quota count below zero ({field})")
        row[field] = [period, n]
    if kind == "member":
        add("md", day)
    else:
        add("em", month)
        add("ed", day)
    return row


def profile_in(t: AppTxn) -> str:
    s = t.get("q.settings", b"")
    return s.get("profile", "seed") if isinstance(s, dict) else "seed"


def set_profile(t: AppTxn, profile: str) -> dict:
    if profile not in PROFILES:
        raise InputError(f"profile (Q-0): one of {', '.join(PROFILES)}")
    t.put("q.settings", b"", {"profile": profile})
    return {"profile": profile}


def reserve(t: AppTxn, recipients: list[str], kind: str, now: int, group: bool) -> tuple[list[str], list[dict]]:
    """Checks and reserves one ``kind`` send for each recipient, in this transaction (rows
    read and written in one batch each; the rule inlined: this loop runs per recipient of
    sends of 10,000). Returns (reserved, refused with their rule)."""
    profile = profile_in(t)
    day, month = periods(now)
    keys = [r.encode() for r in recipients]
    rows = t.get_many("q.r", keys)
    ok, refused, writes = [], [], []
    member = kind == "member"
    total = profile == "daily-total"
    rule_kind = ("Q-3" if group else "Q-1") if member else ("Q-3" if group else "Q-2")
    for rid, key, row in zip(recipients, keys, rows, strict=True):
        if row is None:
            md = em = ed = 0
            row = {}
        else:
            v = row.get("md")
            md = v[1] if v and v[0] == day else 0
            v = row.get("em")
            em = v[1] if v and v[0] == month else 0
            v = row.get("ed")
            ed = v[1] if v and v[0] == day else 0
        if total:
            rule = "Q-0" if md + ed >= TOTAL_PER_DAY else None
        elif member:
            rule = rule_kind if md >= MEMBER_PER_DAY else None
        else:
            rule = rule_kind if em >= ENTERPRISE_PER_MONTH else None
        if rule is not None:
            refused.append({"recipient": rid, "rule": rule, "reason": _WHY[rule]})
            continue
        new = dict(row)
        if member:
            new["md"] = [day, md + 1]
        else:
            new["em"] = [month, em + 1]
            new["ed"] = [day, ed + 1]
        writes.append((key, new))
        ok.append(rid)
    t.put_many("q.r", writes)
    return ok, refused


def release(t: AppTxn, recipients: list[str], kind: str, at: int) -> None:
    """Gives back reservations made at ``at`` (their period's count, if still current)."""
    if not recipients:
        return
    day, month = periods(at)
    rows = t.get_many("q.r", [r.encode() for r in recipients])
    t.put_many("q.r", [(rid.encode(), bump(row, kind, day, month, -1))
                       for rid, row in zip(recipients, rows, strict=True)])


def move(t: AppTxn, recipients: list[str], kind: str, reserved_at: int, sent_at: int) -> None:
    """WeCom delivered on another day (or month) than the one reserved: the count moves to the
    period WeCom counted it in (what WeCom allowed is what happened, even over our limit)."""
    if not recipients:
        return
    d0, m0 = periods(reserved_at)
    d1, m1 = periods(sent_at)
    if (d0, m0) == (d1, m1):
        return
    rows = t.get_many("q.r", [r.encode() for r in recipients])
    t.put_many("q.r", [(rid.encode(), bump(bump(row, kind, d0, m0, -1), kind, d1, m1, 1))
                       for rid, row in zip(recipients, rows, strict=True)])


def counted_elsewhere(t: AppTxn, recipient: str, at: int) -> None:
    """WeCom reports the recipient already had a mass message that day (status 3): if the
    ledger counts none for that day, it counts one (sent outside the SCRM) — so the ledger
    converges with WeCom's count instead of drifting below it."""
    day, month = periods(at)
    row = t.get("q.r", recipient.encode())
    if _cur(row, "md", day) + _cur(row, "ed", day) == 0:
        t.put("q.r", recipient.encode(), bump(row, "enterprise", day, month, 1))


def preview(t: AppTxn, recipients: list[str], kind: str, now: int, group: bool) -> tuple[list[str], list[dict]]:
    profile = profile_in(t)
    day, month = periods(now)
    rows = t.get_many("q.r", [r.encode() for r in recipients])
    ok, refused = [], []
    for rid, row in zip(recipients, rows, strict=True):
        rule = verdict(row, kind, profile, day, month, group)
        if rule is None:
            ok.append(rid)
        else:
            refused.append({"recipient": rid, "rule": rule, "reason": _why(rule)})
    return ok, refused


def usage(t: AppTxn, recipient: str, now: int) -> dict:
    day, month = periods(now)
    row = t.get("q.r", recipient.encode())
    profile = profile_in(t)
    md, em, ed = _cur(row, "md", day), _cur(row, "em", month), _cur(row, "ed", day)
    if profile == "daily-total":
        left = {"member": max(0, TOTAL_PER_DAY - md - ed), "enterprise": max(0, TOTAL_PER_DAY - md - ed)}
    else:
        left = {"member": max(0, MEMBER_PER_DAY - md), "enterprise": max(0, ENTERPRISE_PER_MONTH - em)}
    return {"recipient": recipient, "profile": profile, "day": day, "month": month,
            "member_today": md, "enterprise_this_month": em, "enterprise_today": ed, "left": left}


_WHY = {"Q-1": "already received a member mass message today",
        "Q-2": "already received 4 enterprise mass messages this month",
        "Q-3": "the group already received its mass message quota (1 a day from members, 4 a month)",
        "Q-0": "already received a mass message today (daily-total profile)"}


def _why(rule: str) -> str:
    return _WHY[rule]
