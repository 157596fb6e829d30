"""Welcome messages, channels and live codes (rule Q-10, seed 003 §5.6.2): one default
welcome message and one per channel; text ≤ 500 characters where ``%NICKNAME%`` becomes the
customer's name, remark ≤ 20, an image ≤ 2 MB, jpg or png. A channel has employees and tags
and a live code (WeCom's contact way, ``add_contact_way`` with the channel id as its
``state``); a customer added through it gets the channel's welcome message (or the default)
with ``send_welcome_msg`` on the ``add_external_contact`` callback, and the channel's tags.

Tables: ``ms.welcome`` id → welcome message (``default`` is the default one);
``ms.channel`` id → channel (employees, tags, welcome id, WeCom config id and QR code);
``ms.welcomed`` welcome code → what was sent (a callback delivered twice sends once)."""

from __future__ import annotations

import secrets

from scrm_fast.errors import InputError, NotFoundError
from scrm_fast.storage import AppTxn

NICKNAME = "%NICKNAME%"
MAX_TEXT = 500
MAX_REMARK = 20
MAX_IMAGE = 2 << 20


def check_welcome(doc: object) -> dict:
    if not isinstance(doc, dict) or set(doc) - {"text", "remark", "image", "material"}:
        raise InputError("a welcome message: {text, remark?, image?, material?}")
    text = doc.get("text", "")
    if not isinstance(text, str) or not text.strip():
        raise InputError("text: the welcome text")
    if len(text.replace(NICKNAME, "")) > MAX_TEXT:
        raise InputError(f"Q-10: a welcome message is at most {MAX_TEXT} characters")
    remark = doc.get("remark", "")
    if not isinstance(remark, str) or len(remark) > MAX_REMARK:
        raise InputError(f"Q-10: the remark is at most {MAX_REMARK} characters")
    image = doc.get("image")
    if image is not None:
        if not isinstance(image, dict) or not isinstance(image.get("media_id"), str):
            raise InputError("image: {media_id, size, type}")
        if image.get("type") not in ("jpg", "jpeg", "png"):
            raise InputError("Q-10: the image is a jpg or a png")
        size = image.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_IMAGE:
            raise InputError("Q-10: the image is at most 2 MB")
    material = doc.get("material")
    if material is not None and (not isinstance(material, str) or len(material) > 40):
        raise InputError("material: a material id from the library")
    return {"text": text, "remark": remark, "image": image, "material": material}


def render(welcome: dict, nickname: str) -> tuple[str, list[dict]]:
    text = welcome["text"].replace(NICKNAME, nickname or "")
    atts = [{"msgtype": "image", "image": {"media_id": welcome["image"]["media_id"]}}] if welcome.get("image") else []
    return text, atts


class Welcome:
    def __init__(self, store, clock, client_factory=None) -> None:
        self.store, self.clock, self.client_factory = store, clock, client_factory

    def read(self, fn):
        with self.store.app_read() as t:
            return fn(t)

    def put_welcome(self, t: AppTxn, wid: str, doc: dict) -> dict:
        from control.messaging import materials

        w = {"id": wid, **check_welcome(doc), "updated": self.clock.now_ms()}
        if w["material"]:
            materials.get(t, w["material"])  # it exists now (404 otherwise)
        t.put("ms.welcome", wid.encode(), w)
        return w

    def add_channel(self, t: AppTxn, doc: dict) -> dict:
        if not isinstance(doc, dict) or set(doc) - {"name", "employees", "tags", "welcome"}:
            raise InputError("a channel: {name, employees, tags?, welcome?}")
        name = doc.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 30:
            raise InputError("name: 1–30 characters")
        emps = doc.get("employees")
        if not isinstance(emps, list) or not 1 <= len(emps) <= 100 or not all(
                isinstance(e, str) and 0 < len(e) <= 64 for e in emps):
            raise InputError("employees: 1 to 100 userids (the live code's members)")
        tags = doc.get("tags") or []
        if not isinstance(tags, list) or len(tags) > 20:
            raise InputError("tags: up to 20")
        cid = "ch" + secrets.token_hex(6)
        ch = {"id": cid, "name": name, "employees": emps, "tags": tags, "welcome": None, "config_id": None,
              "qr_code": None, "added": 0, "created": self.clock.now_ms()}
        if doc.get("welcome") is not None:
            ch["welcome"] = self.put_welcome(t, "w" + cid, doc["welcome"])["id"]  # one per channel
        t.put("ms.channel", cid.encode(), ch)
        return ch

    def channel(self, cid: str) -> dict:
        ch = self.read(lambda t: t.get("ms.channel", cid.encode())) if isinstance(cid, str) and len(cid) <= 40 else None
        if ch is None:
            raise NotFoundError(f"no channel {cid}")
        return ch

    async def make_live_code(self, cid: str) -> dict:
        ch = self.channel(cid)
        if ch["config_id"]:
            return ch
        async with self.client_factory() as client:
            config_id, qr = await client.add_contact_way(ch["employees"], state=cid)

        def save(t):
            c = t.get("ms.channel", cid.encode())
            c["config_id"], c["qr_code"] = config_id, qr
            t.put("ms.channel", cid.encode(), c)
            return c
        with self.store.app_write() as t:
            return save(t)

    def plan(self, t: AppTxn, welcome_code: str, state: str) -> tuple[dict | None, dict | None]:
        """For an add_external_contact event: (the welcome to send or None, the channel) —
        None when this welcome code was answered already."""
        if not welcome_code or t.has("ms.welcomed", welcome_code.encode()):
            return None, None
        ch = t.get("ms.channel", state.encode()) if state else None
        w = None
        if ch is not None and ch.get("welcome"):
            w = t.get("ms.welcome", ch["welcome"].encode())
        if w is None:
            w = t.get("ms.welcome", b"default")
        t.put("ms.welcomed", welcome_code.encode(), {"at": self.clock.now_ms(), "channel": state or None})
        if ch is not None:
            ch["added"] += 1
            t.put("ms.channel", state.encode(), ch)
        return w, ch

    async def on_added(self, ext: str, userid: str, welcome_code: str, state: str) -> dict:
        """The customer ``ext`` added ``userid`` (through channel ``state``): welcome and tag them."""
        from control.messaging import materials

        with self.store.app_write() as t:
            w, ch = self.plan(t, welcome_code, state)
            extra = []
            if w is not None and w.get("material"):  # attached from the library: a share
                try:
                    _, extra = materials.resolve(t, "", [{"material": w["material"]}], None)
                except InputError:
                    extra = []  # the material was removed since: the welcome goes without it
        out = {"welcomed": False, "tagged": []}
        if w is None and ch is None:
            return out
        async with self.client_factory() as client:
            if w is not None:
                contact = await client.get_external_contact(ext)
                text, atts = render(w, contact.get("name", ""))
                await client.send_welcome_msg(welcome_code, text, atts + extra)
                out["welcomed"] = True
            if ch is not None and ch["tags"]:
                await client.mark_tag(userid, ext, ch["tags"])
                out["tagged"] = ch["tags"]
        return out
