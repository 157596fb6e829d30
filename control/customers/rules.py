"""The customer side's pure rules and settings: the 17 basic fields and which are enabled
or required, custom fields, follow-up statuses, sources, the six sales stages (P-8), phone
numbers as customer records keep them, and the settings' bounds."""

from __future__ import annotations

import re
from datetime import date

from scrm_fast.errors import InputError

# seed 003 §5.9.1: 17 basic fields; name and phone always on and required, their labels fixed
BASIC_FIELDS: list[tuple[str, str]] = [
    ("name", "客户名称"), ("phone", "手机号"), ("birthday", "生日"), ("gender", "性别"), ("age", "年龄"),
    ("id_card", "身份证"), ("wechat", "微信号"), ("qq", "QQ"), ("email", "邮箱"), ("address", "地址"),
    ("position", "职位"), ("industry", "行业"), ("region", "地区"), ("birthplace", "籍贯"),
    ("website", "网址"), ("remark", "备注"), ("description", "描述")]
FIXED_FIELDS = ("name", "phone")
# seed 003 §5.9.1 (企业字段): the company's name always on and required
COMPANY_FIELDS: list[tuple[str, str]] = [("name", "企业名称"), ("short_name", "企业简称"), ("phone", "联系电话"),
                                         ("website", "企业网址"), ("address", "企业地址"), ("industry", "所属行业"),
                                         ("scale", "企业规模"), ("remark", "备注")]
DEFAULT_STATUSES = ["未跟进", "跟进中", "已成交", "已流失"]
DEFAULT_SOURCES = ["企业微信", "表格导入", "公海领取", "智能拓客", "电话", "其他"]
# P-8: six defaults; won and lost are fixed (never deleted or renamed)
WON, LOST = "赢单", "输单"
DEFAULT_STAGES = ["初步接触", "需求确认", "方案报价", "商务谈判", WON, LOST]
GENDERS = ("男", "女", "未知")

_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_LANDLINE = re.compile(r"^0[1-9][0-9]{8,10}$")
_INTL = re.compile(r"^\+[1-9][0-9]{7,14}$")
_SEP = re.compile(r"[\s\-().\u3000]")


def normalise_phone(raw: object) -> str:
    """A customer's phone as stored: separators gone, +86 / 0086 / 86 dropped before a
    mainland mobile. Mainland mobiles are 11 digits starting 13–19, landlines start with an
    area code 0…, others need +country. Anything else: InputError naming it."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # a spreadsheet cell holding the number as a number
    if isinstance(raw, float) and raw.is_integer():
        raw = str(int(raw))
    if not isinstance(raw, str) or not raw.strip():
        raise InputError("phone is missing")
    n = _SEP.sub("", raw.strip())
    for prefix in ("+86", "0086", "86"):
        if n.startswith(prefix) and len(n) - len(prefix) == 11 and n[len(prefix)] == "1":
            n = n[len(prefix):]
            break
    if _MOBILE.match(n) or _LANDLINE.match(n) or _INTL.match(n):
        return n
    raise InputError(f"phone {raw!r} is not a mainland mobile (11 digits), a landline with its area code, "
                     "or +country number")


def default_settings() -> dict:
    return {"fields": {k: {"label": v, "enabled": k in FIXED_FIELDS or k in ("gender", "wechat", "remark"),
                           "required": k in FIXED_FIELDS} for k, v in BASIC_FIELDS},
            "custom": [], "statuses": list(DEFAULT_STATUSES), "sources": list(DEFAULT_SOURCES), "tags": [],
            "stages": list(DEFAULT_STAGES), "stage_reopen": False, "protection": False, "lead_package": 0,
            "prospect_release_s": None,
            "company_fields": {k: {"label": v, "enabled": True, "required": k == "name"} for k, v in COMPANY_FIELDS}}


def _strs(v: object, name: str, limit: int = 200) -> list[str]:
    if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, str) and 0 < len(x) <= 40 for x in v):
        raise InputError(f"{name}: a list of up to {limit} names of 1–40 characters")
    if len(set(v)) != len(v):
        raise InputError(f"{name}: a name appears twice")
    return list(v)


def merge_settings(cur: dict, doc: object) -> dict:
    """``cur`` with the changes of ``doc`` checked (unknown keys, fixed fields and stages:
    InputError)."""
    if not isinstance(doc, dict):
        raise InputError("settings: a JSON object")
    out = {**cur, "fields": {k: dict(v) for k, v in cur["fields"].items()}}
    for k, v in doc.items():
        if k == "fields":
            if not isinstance(v, dict):
                raise InputError("fields: {field: {label?, enabled?, required?}}")
            for f, change in v.items():
                if f not in out["fields"] or not isinstance(change, dict) or set(change) - {"label", "enabled",
                                                                                          "required"}:
                    raise InputError(f"fields: {f!r} is not a basic field, or its change is not "
                                     "{label, enabled, required}")
                if f in FIXED_FIELDS and change:
                    raise InputError(f"fields: {f} is always enabled and required, its label fixed")
                for key in ("enabled", "required"):
                    if key in change and not isinstance(change[key], bool):
                        raise InputError(f"fields.{f}.{key}: true or false")
                if "label" in change and (not isinstance(change["label"], str) or not 0 < len(change["label"]) <= 20):
                    raise InputError(f"fields.{f}.label: 1–20 characters")
                out["fields"][f].update(change)
                if out["fields"][f]["required"] and not out["fields"][f]["enabled"]:
                    raise InputError(f"fields.{f}: a required field must be enabled")
        elif k == "custom":
            if not isinstance(v, list) or len(v) > 100:
                raise InputError("custom: a list of up to 100 fields")
            seen = set()
            for c in v:
                if (not isinstance(c, dict) or set(c) - {"key", "label", "type", "options", "enabled", "required"}
                        or not isinstance(c.get("key"), str) or not re.match(r"^[a-z][a-z0-9_]{0,31}$", c["key"])
                        or c.get("type") not in ("text", "date", "choice")
                        or not isinstance(c.get("label"), str) or not 0 < len(c["label"]) <= 20):
                    raise InputError("custom: each {key: a-z0-9_, label, type: text|date|choice, options?, "
                                     "enabled?, required?}")
                if c["key"] in seen or c["key"] in out["fields"]:
                    raise InputError(f"custom: key {c['key']!r} used twice")
                seen.add(c["key"])
                if c["type"] == "choice":
                    c["options"] = _strs(c.get("options"), f"custom.{c['key']}.options", 50)
                    if not c["options"]:
                        raise InputError(f"custom.{c['key']}: a choice needs options")
                c.setdefault("enabled", True)
                c.setdefault("required", False)
            out["custom"] = v
        elif k == "company_fields":
            if not isinstance(v, dict):
                raise InputError("company_fields: {field: {label?, enabled?, required?}}")
            cf = {f: dict(x) for f, x in out.get("company_fields", default_settings()["company_fields"]).items()}
            for f, change in v.items():
                if f not in cf or not isinstance(change, dict) or set(change) - {"label", "enabled", "required"}:
                    raise InputError(f"company_fields: {f!r} is not a company field")
                if f == "name" and change:
                    raise InputError("company_fields: the company name is always enabled and required")
                if any(not isinstance(change.get(b, True), bool) for b in ("enabled", "required")):
                    raise InputError(f"company_fields.{f}: enabled and required are true or false")
                cf[f].update(change)
                if cf[f]["required"] and not cf[f]["enabled"]:
                    raise InputError(f"company_fields.{f}: a required field must be enabled")
            out["company_fields"] = cf
        elif k in ("statuses", "sources", "tags"):
            out[k] = _strs(v, k, 500 if k == "tags" else 50)
        elif k == "stages":
            st = _strs(v, "stages", 20)
            if WON not in st or LOST not in st or st[-2:] != [WON, LOST]:
                raise InputError(f"stages (P-8): {WON} and {LOST} stay, last, and are not renamed")
            out["stages"] = st
        elif k in ("stage_reopen", "protection"):
            if not isinstance(v, bool):
                raise InputError(f"{k}: true or false")
            out[k] = v
        elif k == "lead_package":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10**9:
                raise InputError("lead_package: leads bought, 0 … 10^9")
            out[k] = v
        elif k == "prospect_release_s":
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 60 <= v <= 366 * 86400):
                raise InputError("prospect_release_s (P-6): null (never) or 60 s … 366 days")
            out[k] = v
        else:
            raise InputError(f"unknown setting {k!r}")
    return out


def check_record(settings: dict, doc: dict, *, partial: bool = False) -> dict:
    """A customer's fields checked against the settings: enabled basic fields, custom fields
    by type, status, source and tags from their lists; required ones present (unless
    ``partial``, an update). Returns the cleaned fields."""
    if not isinstance(doc, dict):
        raise InputError("a customer: a JSON object")
    out: dict = {}
    fields = settings["fields"]
    custom = {c["key"]: c for c in settings["custom"] if c.get("enabled", True)}
    for k, v in doc.items():
        if k in fields:
            if not fields[k]["enabled"]:
                raise InputError(f"{k}: the field is not enabled")
            if k == "phone":
                out[k] = normalise_phone(v)
            elif k == "gender":
                if v not in GENDERS:
                    raise InputError(f"gender: one of {', '.join(GENDERS)}")
                out[k] = v
            elif k == "age":
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 150:
                    raise InputError("age: 0 … 150")
                out[k] = v
            elif k == "birthday":
                out[k] = _day(v, k)
            else:
                if not isinstance(v, str) or len(v) > (100 if k == "name" else 500):
                    raise InputError(f"{k}: text of up to {100 if k == 'name' else 500} characters")
                if k == "name" and not v.strip():
                    raise InputError("name is missing")
                out[k] = v.strip() if k == "name" else v
        elif k == "custom":
            if not isinstance(v, dict):
                raise InputError("custom: {key: value}")
            cc = {}
            for ck, cv in v.items():
                spec = custom.get(ck)
                if spec is None:
                    raise InputError(f"custom.{ck}: no such custom field")
                if spec["type"] == "date":
                    cc[ck] = _day(cv, f"custom.{ck}")
                elif spec["type"] == "choice":
                    if cv not in spec["options"]:
                        raise InputError(f"custom.{ck}: one of {', '.join(spec['options'])}")
                    cc[ck] = cv
                else:
                    if not isinstance(cv, str) or len(cv) > 500:
                        raise InputError(f"custom.{ck}: text of up to 500 characters")
                    cc[ck] = cv
            out["custom"] = cc
        elif k == "status":
            if v not in settings["statuses"]:
                raise InputError(f"status: one of {', '.join(settings['statuses'])}")
            out[k] = v
        elif k == "source":
            if v not in settings["sources"]:
                raise InputError(f"source: one of {', '.join(settings['sources'])}")
            out[k] = v
        elif k == "tags":
            tags = _strs(v, "tags", 50)
            unknown = set(tags) - set(settings["tags"])
            if unknown:
                raise InputError(f"tags: not enterprise tags: {', '.join(sorted(unknown))}")
            out[k] = tags
        elif k in ("company", "external_userid"):
            if v is not None and (not isinstance(v, str) or not 0 < len(v) <= 100 or "\0" in v):
                raise InputError(f"{k}: an id")
            out[k] = v
        else:
            raise InputError(f"unknown customer field {k!r}")
    if not partial:
        for k, f in fields.items():
            if f["required"] and k not in out:
                raise InputError(f"{k} is missing")
        for ck, spec in custom.items():
            if spec.get("required") and ck not in out.get("custom", {}):
                raise InputError(f"custom.{ck} is missing")
    return out


def _day(v: object, name: str) -> str:
    try:
        return date.fromisoformat(v).isoformat()
    except (TypeError, ValueError):
        raise InputError(f"{name}: a day YYYY-MM-DD") from None


def check_company(settings: dict, doc: object) -> dict:
    """A company's fields against the settings' company fields (enabled ones only)."""
    if not isinstance(doc, dict):
        raise InputError("fields: {field: text}")
    spec = settings.get("company_fields") or default_settings()["company_fields"]
    out = {}
    for k, v in doc.items():
        f = spec.get(k)
        if f is None or not f["enabled"]:
            raise InputError(f"{k}: not an enabled company field")
        if not isinstance(v, str) or len(v) > 200:
            raise InputError(f"{k}: text of up to 200 characters")
        out[k] = v
    return out
