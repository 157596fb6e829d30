"""The material library (seed 003 §5.6.1): articles (图文: title, description, link, cover),
videos and scripts (话术), each in a category, visible to all employees or some, with a share
count. Mass sends and welcome messages attach from it (``{"material": id}`` in
``attachments``): the material becomes the attachment WeCom takes (a link, a video; a
script's text joins the message) and its share count goes up in the same transaction.

Table: ``ms.material`` id → material."""

from __future__ import annotations

import secrets

from scrm_fast.errors import InputError, NotFoundError
from scrm_fast.storage import AppTxn

KINDS = ("article", "video", "script")


def check_material(doc: object, partial: bool = False) -> dict:
    if not isinstance(doc, dict) or set(doc) - {"kind", "title", "description", "url", "cover", "media_id", "text",
                                                "category", "scope"}:
        raise InputError("a material: {kind article|video|script, title, …, category, scope}")
    out = {}
    if not partial or "kind" in doc:
        if doc.get("kind") not in KINDS:
            raise InputError("kind: article, video or script")
        out["kind"] = doc["kind"]
    for k, lim in (("title", 64), ("description", 512), ("url", 2048), ("cover", 2048), ("media_id", 200),
                   ("text", 4000), ("category", 30)):
        if k in doc:
            v = doc[k]
            in_bytes = k in ("title", "description", "url")  # WeCom's link limits are in bytes
            if not isinstance(v, str) or len(v.encode() if in_bytes else v) > lim:
                raise InputError(f"{k}: text of at most {lim} {'bytes' if in_bytes else 'characters'}")
            out[k] = v
    if "scope" in doc:
        sc = doc["scope"]
        if sc != "all" and (not isinstance(sc, list) or not all(isinstance(x, str) and x for x in sc)):
            raise InputError("scope: \"all\" or a list of employee userids")
        out["scope"] = sc
    if not partial:
        need = {"article": ("title", "url"), "video": ("title", "media_id"), "script": ("title", "text")}[out["kind"]]
        missing = [k for k in need if not out.get(k)]
        if missing:
            raise InputError(f"a {out['kind']} needs {', '.join(missing)}")
        out.setdefault("category", "默认")
        out.setdefault("scope", "all")
    return out


def add(t: AppTxn, doc: dict, by: str, now: int) -> dict:
    m = {"id": "mt" + secrets.token_hex(6), **check_material(doc), "shares": 0, "by": by, "created": now}
    t.put("ms.material", m["id"].encode(), m)
    return m


def update(t: AppTxn, mid: str, doc: dict) -> dict:
    m = get(t, mid)
    m.update(check_material(doc, partial=True))
    t.put("ms.material", mid.encode(), m)
    return m


def get(t: AppTxn, mid: str) -> dict:
    m = t.get("ms.material", mid.encode()) if isinstance(mid, str) and 0 < len(mid) <= 40 else None
    if m is None:
        raise NotFoundError(f"no material {mid}")
    return m


def visible(m: dict, employee: str | None) -> bool:
    return m["scope"] == "all" or (employee is not None and employee in m["scope"])


def resolve(t: AppTxn, text: str, attachments: list, sender: str | None) -> tuple[str, list]:
    """Attachments that name a material become what WeCom takes; each use is a share."""
    out = []
    for a in attachments or []:
        if not (isinstance(a, dict) and set(a) == {"material"}):
            out.append(a)
            continue
        m = get(t, a["material"])
        if sender is not None and not visible(m, sender):
            raise InputError(f"material {m['id']} is not shared with {sender}")
        if m["kind"] == "article":
            out.append({"msgtype": "link", "link": {"title": m["title"], "url": m["url"],
                                                   **({"desc": m["description"]} if m.get("description") else {}),
                                                   **({"picurl": m["cover"]} if m.get("cover") else {})}})
        elif m["kind"] == "video":
            out.append({"msgtype": "video", "video": {"media_id": m["media_id"]}})
        else:
            text = f"{text}\n{m['text']}".strip() if text else m["text"]
        m["shares"] += 1
        t.put("ms.material", m["id"].encode(), m)
    return text, out
