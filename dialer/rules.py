"""The dialer's settings and its pure rules: the tenant's day and calling hours (D-12),
phone-number normalisation, the settings' limits with seed 003's advice, and the
incoming-call pop-up table (D-9a … e). No storage here: the scheduler and the tests both
call these."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scrm_fast.errors import InputError

# seed 003 §5.9.3 ("呼叫设置"): each setting with its bounds and the advice shown beside it
SETTINGS: dict[str, dict] = {
    "valid_seconds": {"rule": "D-1", "default": 30, "min": 1, "max": 3600,
                      "advice": "a call counts as valid once its talk time reaches N seconds"},
    "rotate_after": {"rule": "D-2", "default": 15, "min": 1, "max": 1000,
                     "advice": "15–20; not below 3: frequent power cycling itself gets cards blocked"},
    "sim_daily_cap": {"rule": "D-3", "default": 60, "min": 1, "max": 1000,
                      "advice": "50–80 calls per SIM a day; the lower, the less likely a block"},
    "new_sim_cap": {"rule": "D-3", "default": 30, "min": 1, "max": 30,
                    "advice": "a new SIM on its first day: at most 30"},
    "interval_s": {"rule": "D-4", "default": 100, "min": 0, "max": 86400,
                   "advice": "100 s or more after each call ends; the longer, the less likely a block"},
    "number_daily_cap": {"rule": "D-5", "default": 3, "min": 1, "max": 3,
                         "advice": "the same number at most 3 times a day"},
    "licences": {"rule": "D-6", "default": 0, "min": 0, "max": 100000,
                 "advice": "seats with outbound permission never exceed the licences bought"},
    "reservation_timeout_s": {"rule": "D-10", "default": 900, "min": 30, "max": 86400,
                              "advice": "a dial with no call record after this long frees its device"},
}
DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_HOURS = [["09:00", "12:00"], ["13:30", "20:00"]]

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")


@dataclass(frozen=True)
class Settings:
    valid_seconds: int = 30
    rotate_after: int = 15
    sim_daily_cap: int = 60
    new_sim_cap: int = 30
    interval_s: int = 100
    number_daily_cap: int = 3
    licences: int = 0
    reservation_timeout_s: int = 900
    timezone: str = DEFAULT_TIMEZONE
    hours: tuple[tuple[str, str], ...] = tuple(tuple(h) for h in DEFAULT_HOURS)
    shared_records: bool = False  # D-9: "customer records shared by all operators"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_doc(self) -> dict:
        d = {k: getattr(self, k) for k in SETTINGS}
        d.update(timezone=self.timezone, hours=[list(h) for h in self.hours], shared_records=self.shared_records)
        return d

    def warnings(self) -> list[str]:
        out = []
        if self.rotate_after < 3:
            out.append("D-2: rotating after fewer than 3 calls power-cycles SIMs often, which itself gets "
                       "cards blocked (seed 003 advises 15–20)")
        if self.sim_daily_cap > 80:
            out.append("D-3: more than 80 calls per SIM a day raises the chance of a block (advice 50–80)")
        if self.interval_s < 100:
            out.append("D-4: an interval under 100 s raises the chance of a block (advice ≥ 100 s)")
        return out

    @property
    def first_day_cap(self) -> int:
        return min(self.sim_daily_cap, self.new_sim_cap)


def parse_settings(doc: dict, base: Settings | None = None) -> Settings:
    """Settings from a JSON object (unknown keys and values out of bounds: InputError)."""
    base = base or Settings()
    if not isinstance(doc, dict):
        raise InputError("settings: a JSON object")
    cur = base.to_doc()
    for k, v in doc.items():
        if k in SETTINGS:
            spec = SETTINGS[k]
            if isinstance(v, bool) or not isinstance(v, int) or not spec["min"] <= v <= spec["max"]:
                raise InputError(f"{k} ({spec['rule']}): an integer from {spec['min']} to {spec['max']}")
            cur[k] = v
        elif k == "timezone":
            if not isinstance(v, str) or not v or len(v) > 64:
                raise InputError("timezone: an IANA time zone name such as Asia/Shanghai")
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise InputError(f"timezone: unknown time zone {v!r}") from None
            cur[k] = v
        elif k == "hours":
            cur[k] = parse_hours(v)
        elif k == "shared_records":
            if not isinstance(v, bool):
                raise InputError("shared_records: true or false")
            cur[k] = v
        else:
            raise InputError(f"unknown setting {k!r}")
    return Settings(**{**cur, "hours": tuple(tuple(h) for h in cur["hours"])})


def parse_hours(v: object) -> list[list[str]]:
    """Calling hours: a list of ``["HH:MM", "HH:MM"]`` windows of local time, start < end,
    not overlapping (an empty list: no dialling at all)."""
    if not isinstance(v, list) or len(v) > 24:
        raise InputError("hours: a list of [start, end] windows such as [[\"09:00\", \"18:00\"]]")
    out = []
    for w in v:
        if (not isinstance(w, list) or len(w) != 2 or not all(isinstance(x, str) and _HHMM.match(x) for x in w)
                or w[0] >= w[1]):
            raise InputError(f"hours: {w!r} is not a window [\"HH:MM\", \"HH:MM\"] with start before end")
        out.append([w[0], w[1]])
    out.sort()
    for a, b in zip(out, out[1:], strict=False):
        if b[0] < a[1]:
            raise InputError(f"hours: windows {a} and {b} overlap")
    return out


# -- the tenant's day (D-12) ----------------------------------------------------------------
def local(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz)


def day_of(ms: int, tz: ZoneInfo) -> str:
    """The tenant's calendar day of an instant, ``YYYY-MM-DD``: what every daily cap counts by."""
    return local(ms, tz).date().isoformat()


def _instant(d: date, hhmm: str, tz: ZoneInfo) -> int:
    """Epoch ms of local wall time ``hhmm`` on day ``d`` (24:00 = the next midnight). A wall
    time the clocks skip (spring forward) maps to the instant after the gap."""
    if hhmm == "24:00":
        d, hhmm = d + timedelta(days=1), "00:00"
    h, m = int(hhmm[:2]), int(hhmm[3:])
    naive = datetime.combine(d, time(h, m))
    aware = naive.replace(tzinfo=tz)
    # round-trip: a skipped time comes back different; take the later reading of the gap
    back = datetime.fromtimestamp(aware.timestamp(), tz).replace(tzinfo=None)
    if back != naive:
        aware = naive.replace(tzinfo=tz, fold=1)
        later = aware.timestamp()
        earlier = naive.replace(tzinfo=tz, fold=0).timestamp()
        return int(max(later, earlier) * 1000)
    return int(aware.timestamp() * 1000)


def next_midnight(ms: int, tz: ZoneInfo) -> int:
    return _instant(local(ms, tz).date() + timedelta(days=1), "00:00", tz)


def in_hours(ms: int, s: Settings) -> bool:
    hhmm = local(ms, s.tz).strftime("%H:%M")
    return any(a <= hhmm < b for a, b in s.hours)


def next_open(ms: int, s: Settings) -> int | None:
    """The first instant at or after ``ms`` inside calling hours (None: no hours at all)."""
    if not s.hours:
        return None
    if in_hours(ms, s):
        return ms
    d = local(ms, s.tz).date()
    for add in range(0, 3):
        for a, _ in s.hours:
            t = _instant(d + timedelta(days=add), a, s.tz)
            if t > ms and in_hours(t, s):
                return t
    return None


# -- phone numbers --------------------------------------------------------------------------
_SEPARATORS = re.compile(r"[\s\-().]")
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


def normalise_number(raw: object) -> str:
    """A dialable number: separators removed; +86 / 0086 dropped before an 11-digit mainland
    mobile (so ``+86 138-0013-8000`` and ``13800138000`` are one number for D-5 and D-11)."""
    if not isinstance(raw, str) or len(raw) > 40:
        raise InputError("a phone number: a string of digits")
    n = _SEPARATORS.sub("", raw)
    if not _NUMBER.match(n):
        raise InputError(f"{raw!r} is not a phone number")
    for prefix in ("+86", "0086"):
        if n.startswith(prefix) and len(n) == len(prefix) + 11 and n[len(prefix)] == "1":
            n = n[len(prefix):]
    return n


def mask_number(n: str) -> str:
    return n if len(n) <= 7 else n[:3] + "*" * (len(n) - 7) + n[-4:]


# -- the incoming-call pop-up (D-9, seed 004 §四) ------------------------------------------
@dataclass(frozen=True)
class Operator:
    username: str
    level: str  # super | leader | regular
    group: int | None  # the operator's department
    channel: str | None  # the device (line) the operator is linked to
    popup: bool  # the pop-up permission
    sharing: bool  # the sharing permission


@dataclass(frozen=True)
class Channel:
    id: str
    group: int | None
    popup: bool


@dataclass(frozen=True)
class Record:
    creator: str
    creator_group: int | None


def pops_up(op: Operator, ch: Channel, rec: Record | None, caller: str | None, shared_switch: bool) -> str | None:
    """The D-9 rule under which ``op``'s console shows the caller's record, or None."""
    if not caller or not op.popup or not ch.popup:
        return None
    sharing = op.sharing and shared_switch
    if op.level == "super":
        return "D-9a"
    if op.level == "leader":
        if op.group is None or op.group != ch.group:
            return None
        if rec is None:
            return "D-9c"
        return "D-9b" if (op.group == rec.creator_group or sharing) else None
    if op.channel is None or op.channel != ch.id:
        return None
    if rec is None:
        return "D-9e"
    return "D-9d" if (op.username == rec.creator or sharing) else None
