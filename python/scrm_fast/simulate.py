"""A deterministic simulated enterprise and its chat-archive stream (spec §2–§4, §6).

``simulate(out, messages, seed)`` writes:

- ``keys/<ver>.pem``: RSA-2048 private keys (v1 PKCS#1, later versions PKCS#8); the stream
  rotates from one version to the next at equal shares of the messages;
- ``batches/chatdata-NNNN.jsonl``: GetChatData responses (≤ 1000 items each), one a line,
  sealed with the open scheme (spec §3) in Rust on all cores;
- ``directory.json`` (spec §6) and ``truth.jsonl``: every plaintext message with its seq,
  byte-identical to what ``scrm export`` prints when everything is kept (no directory);
- ``expected.jsonl``: the archivable subset under the consent rules (C-0 … C-12) as
  labelled message by message by ``consent_reference``, byte-identical to ``scrm export``
  after an ingest with ``--directory``; ``expected_rules.json``: kept/dropped per rule.

Consent scenarios: one-to-one chats with archived and non-archived employees; groups of
five kinds (archived owner; archived members who speak late; archived members who never
speak; an owner transfer to an archived employee; no archived employee at all);
customers who disagree (from the directory and by ``disagree`` messages) and agree again;
the enterprise switch ``service_requires_consent`` on or off.

Same seed → same enterprise and same plaintext stream (keys and ciphertexts are random).
Generation is per message in Python (a simulator, not a hot path); sealing a document
runs in Rust on a worker thread while the next document is generated.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from scrm_fast import _core
from scrm_fast.consent_reference import ConsentReference

DOC_ITEMS = 1000
DOCS_PER_FILE = 100
START_MS = 1_700_000_000_000

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀英 霞 平".split()
_PINYIN = ["zhangsan", "lisi", "wangwu", "zhaoliu", "sunqi", "zhouba", "wujiu", "zhengshi", "chenyi", "liuer",
           "yangfan", "huangli", "linxi", "heyu", "gaoyang", "luoyi", "songjia", "tangning", "hanmei", "fengtao"]
_DEPTS = ["总经办", "销售一部", "销售二部", "客户成功部", "市场部", "风控合规部", "华东大区", "华南大区"]
_PHRASES = [
    "您好，请问有什么可以帮您？", "这款产品的年化收益大概是4.5%左右", "我们周三下午3点开会讨论一下方案",
    "合同已经发到您邮箱了，请查收", "价格方面可以再优惠一点吗", "收到，谢谢！", "好的👌", "没问题，马上安排",
    "明天上午10:30给您回电话", "请把身份证照片发我一下", "这个保本吗？", "我加您微信详细聊", "麻烦发一下报价单",
    "Hi, could you send the invoice for order #20231108?", "OK, let me check with our finance team.",
    "会员卡积分可以兑换礼品🎁", "物流单号是 SF1234567890", "详情见 https://example.com/promo?id=42",
    "客户反馈说APP登录不上", "已为您登记，预计3个工作日内处理", "这周末有活动，满300减50", "哈哈哈😂",
    "晚点我再跟进一下", "请问您方便留个电话吗？", "您的订单已发货，请注意查收📦", "我们的服务热线是400-800-1234",
    "Meeting moved to 4pm, room B-203.", "能不能开专票？", "首付比例最低20%", "返点的事情私下说",
]
_EMOJI = ["😀", "🙏", "👍", "🎉", "💰", "🔥", "❤️", "✅", "🤝", "📈"]
_FILES = [("季度报告", "pdf"), ("报价单", "xlsx"), ("合同草案", "docx"), ("产品手册", "pdf"), ("logo", "png")]

# msgtype weights for the random part of the stream (text dominates, as in real archives)
_TYPE_WEIGHTS = {
    "text": 60, "image": 6, "voice": 3, "video": 2, "file": 3, "link": 3, "emotion": 3, "card": 1,
    "location": 1, "weapp": 1, "chatrecord": 1, "todo": 0.5, "vote": 0.3, "collect": 0.3, "redpacket": 0.5,
    "external_redpacket": 0.3, "meeting": 0.3, "docmsg": 0.5, "markdown": 0.5, "news": 0.5, "calendar": 0.3,
    "mixed": 1, "meeting_voice_call": 0.2, "voip_doc_share": 0.2, "sphfeed": 0.3, "voiptext": 0.3,
    "qydiskfile": 0.3, "revoke": 0.6, "agree": 0.3, "disagree": 0.1, "switch": 0.1,
    # newer types this version does not know: stored whole, counted
    "meeting_notification": 0.05, "note": 0.05,
}
ALL_TYPES = list(_TYPE_WEIGHTS)


def media_bytes(sdkfileid: str, size: int, kind: str = "") -> bytes:
    """The content the stand-in SDK serves for a simulated media item: for an image, a PNG
    of random pixels (64 wide) of about ``size`` bytes, so a browser can show it; else
    random bytes."""
    rng = random.Random(sdkfileid)  # (stored deflate blocks: the PNG's size follows from its height)
    if kind == "voice":  # AMR-NB: frames of mode 7 (12.2 kbit/s), any payload bits decode
        return b"#!AMR\n" + b"".join(b"\x3c" + rng.randbytes(31) for _ in range(max(1, size // 32)))
    if kind != "image":
        return rng.randbytes(size)
    import struct
    import zlib

    w = 64
    h = max(1, size // (w * 3 + 1))
    rows = b"".join(b"\0" + rng.randbytes(w * 3) for _ in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 0)) + chunk(b"IEND", b""))


def voice_request(filesize: int) -> int:
    """The ``size`` that makes ``media_bytes(…, size, "voice")`` exactly ``filesize`` bytes."""
    return max(1, (filesize - 6) // 32) * 32


def png_request(filesize: int) -> int:
    """The ``size`` that makes ``media_bytes(…, size, "image")`` exactly ``filesize`` bytes."""
    def png_len(h: int) -> int:
        raw = h * 193
        return 8 + 25 + 12 + raw + 5 * max(1, -(-raw // 65535)) + 6 + 12

    base = max(1, filesize // 193)
    for h in range(max(1, base - 3), base + 3):
        if png_len(h) == filesize:
            return h * 193
    raise ValueError(f"no simulated image is {filesize} bytes")


def media_size(sdkfileid: str, stated: int) -> int:
    """A simulated media item's content size: as its message states, or (meeting voice
    calls state none) derived from the id."""
    return stated if stated > 0 else 4096 + int(hashlib.sha256(sdkfileid.encode()).hexdigest()[:6], 16) % 60_000


@dataclass
class Enterprise:
    directory: dict
    employees: list[str]
    archived: list[str]
    customers: list[str]
    groups: list[dict]
    # simulation-only facts (not in the directory): per roomid, archived members who never
    # speak, and the time before which archived members stay silent
    silent: dict[str, set[str]]
    speak_after: dict[str, int]


GROUP_KINDS = ("archived_owner", "speaks_late", "never_speaks", "transfer", "unarchived")


def build_enterprise(rng: random.Random, n_employees: int = 40, n_customers: int = 300,
                     n_groups: int = 25, service_requires_consent: bool = False,
                     span_ms: int = 30 * 86_400_000) -> Enterprise:
    depts = [{"id": 1, "name": "某某科技有限公司", "parent": 0}]
    for i, name in enumerate(_DEPTS, start=2):
        depts.append({"id": i, "name": name, "parent": 1 if i < 6 else 2})
    employees = []
    for i in range(n_employees):
        uid = _PINYIN[i % len(_PINYIN)] + (str(i // len(_PINYIN)) if i >= len(_PINYIN) else "")
        resigned = i % 9 == 8
        employees.append({
            "userid": uid, "name": rng.choice(_SURNAMES) + rng.choice(_GIVEN),
            "department": rng.randint(2, len(depts)), "archived": i % 10 != 7,
            "status": "resigned" if resigned else "active",
            "resigned_at": START_MS + rng.randint(10, 30) * 86_400_000 if resigned else None,
            "leader": employees[0]["userid"] if employees else None,
        })
    uids = [e["userid"] for e in employees]
    customers = []
    for i in range(n_customers):
        ext = ("wm" if i % 3 else "wo") + f"{rng.getrandbits(80):020x}"
        follow = rng.sample(uids, k=rng.choice([1, 1, 2]))
        customers.append({"external_userid": ext, "name": rng.choice(_SURNAMES) + rng.choice(["女士", "先生", "总"]),
                          "follow_users": follow, "collaborators": rng.sample(uids, k=rng.choice([0, 1]))})
    cids = [c["external_userid"] for c in customers]
    archived_ids = [e["userid"] for e in employees if e["archived"]]
    plain_ids = [e["userid"] for e in employees if not e["archived"]]
    groups = []
    silent: dict[str, set[str]] = {}
    speak_after: dict[str, int] = {}
    for i in range(n_groups):
        kind = GROUP_KINDS[i % len(GROUP_KINDS)]
        roomid = f"wr{rng.getrandbits(72):018x}"
        changes = []
        if kind == "archived_owner":
            owner = rng.choice(archived_ids)
            staff = [owner, *rng.sample(uids, k=rng.randint(0, 2))]
        elif kind == "unarchived":
            owner = rng.choice(plain_ids)
            staff = [owner, *rng.sample(plain_ids, k=rng.randint(0, 2))]
        else:
            owner = rng.choice(plain_ids)
            staff = [owner, *rng.sample(archived_ids, k=rng.randint(1, 3))]
            if kind == "never_speaks":
                silent[roomid] = set(staff) - {owner}
            elif kind == "speaks_late":
                speak_after[roomid] = START_MS + rng.randint(span_ms // 5, span_ms // 2)
            else:  # transfer: an archived admin becomes owner part-way through
                new_owner = rng.choice([s for s in staff if s != owner])
                changes.append({"owner": new_owner, "time": START_MS + rng.randint(span_ms // 5, span_ms // 2)})
        staff = list(dict.fromkeys(staff))
        members = [{"id": m, "join_time": START_MS - rng.randint(1, 100) * 86_400_000}
                   for m in staff + rng.sample(cids, k=rng.randint(2, 25))]
        name = rng.choice(["VIP客户群", "售后服务群", "新品体验群", "理财交流群", "项目沟通群"]) + str(i + 1)
        groups.append({"roomid": roomid, "name": name, "owner": owner, "members": members,
                       "owner_changes": changes})
    consent = []
    for c in rng.sample(customers, k=max(1, n_customers // 20)):
        consent.append({"userid": c["follow_users"][0], "external_userid": c["external_userid"],
                        "status": rng.choice(["Disagree", "Agree", "Default_Agree"]),
                        "time": START_MS + rng.randint(0, 20) * 86_400_000})
    directory = {"corp": {"corpid": f"ww{rng.getrandbits(64):016x}", "name": "某某科技有限公司",
                          "service_requires_consent": service_requires_consent},
                 "departments": depts, "employees": employees, "customers": customers, "groups": groups,
                 "consent": consent}
    return Enterprise(directory, uids, archived_ids, cids, groups, silent, speak_after)


class _Stream:
    def __init__(self, rng: random.Random, ent: Enterprise) -> None:
        self.rng = rng
        self.ent = ent
        self.recent: list[str] = []
        self.msgtime = START_MS
        self.texts = 0
        # replies the employee owes: (due time, employee, customer); most within minutes
        self.replies: list[tuple[int, str, str]] = []

    def text(self) -> str:
        r = self.rng
        roll = r.random()
        self.texts += 1
        if roll < 0.002 or self.texts % 997 == 500:  # an occasional very long message
            return "".join(r.choice(_PHRASES) for _ in range(r.randint(200, 600)))
        parts = [r.choice(_PHRASES) for _ in range(r.choice([1, 1, 1, 2, 3]))]
        if roll < 0.2:
            parts.append(r.choice(_EMOJI))
        if roll > 0.9:
            parts.append(str(r.randint(1, 10_000_000)))
        return "".join(parts)

    def _fileid(self) -> str:
        return f"CtYBMzA2OTAyMDEwMjA0{self.rng.getrandbits(120):030x}"

    def _media(self, stated: int, scale: int = 64, kind: str = "") -> tuple[str, str, int]:
        """A media item: its sdkfileid, the md5sum and size of the content the stand-in
        SDK serves for it (``media_bytes``; sizes scaled down from realistic ones so that a
        simulated archive's media stays small on disk)."""
        fid = self._fileid()
        content = media_bytes(fid, max(1, stated // scale), kind)
        return fid, hashlib.md5(content).hexdigest(), len(content)

    def payload(self, t: str, sender: str) -> tuple[str, dict]:  # noqa: C901 - one branch per msgtype
        r = self.rng
        if t == "text":
            return "text", {"content": self.text()}
        if t == "image":
            fid, md5, size = self._media(r.randint(10_000, 3_000_000), 256, "image")
            return "image", {"md5sum": md5, "filesize": size, "sdkfileid": fid}
        if t == "voice":
            fid, md5, size = self._media(r.randint(2000, 90_000), 8, "voice")
            return "voice", {"md5sum": md5, "voice_size": size, "play_length": r.randint(1, 60), "sdkfileid": fid}
        if t == "video":
            fid, md5, size = self._media(r.randint(100_000, 30_000_000), 96)
            return "video", {"md5sum": md5, "filesize": size, "play_length": r.randint(3, 300), "sdkfileid": fid}
        if t == "file":
            name, ext = r.choice(_FILES)
            fid, md5, size = self._media(r.randint(1000, 9_000_000), 256)
            return "file", {"md5sum": md5, "filename": f"{name}{r.randint(1, 9)}.{ext}", "fileext": ext,
                            "filesize": size, "sdkfileid": fid}
        if t == "link":
            return "link", {"title": r.choice(["限时优惠活动", "产品白皮书下载", "Annual Report 2023"]),
                            "description": self.text(), "link_url": f"https://example.com/a/{r.randint(1, 99999)}",
                            "image_url": "https://example.com/img.png"}
        if t == "emotion":
            fid, md5, size = self._media(r.randint(1000, 90000), 16)
            return "emotion", {"type": r.choice([1, 2]), "width": 240, "height": 240, "imagesize": size,
                               "md5sum": md5, "sdkfileid": fid}
        if t == "card":
            return "card", {"corpname": "某某科技有限公司", "userid": r.choice(self.ent.employees)}
        if t == "location":
            return "location", {"longitude": round(r.uniform(100, 122), 6), "latitude": round(r.uniform(22, 40), 6),
                                "address": r.choice(["广东省深圳市南山区科技园", "上海市浦东新区陆家嘴"]),
                                "title": r.choice(["腾讯大厦", "环球金融中心"]), "zoom": 15}
        if t == "weapp":
            return "weapp", {"title": "会员中心", "description": "查看积分与权益", "username": "gh_0123456789ab@app",
                             "displayname": r.choice(["某某商城", "预约小程序"])}
        if t == "chatrecord":
            items = [{"type": "ChatRecordText", "msgtime": self.msgtime // 1000 - 60,
                      "content": orjson.dumps({"content": self.text()}).decode(), "from_chatroom": False},
                     {"type": "ChatRecordFile", "msgtime": self.msgtime // 1000 - 30,
                      "content": orjson.dumps({"filename": "合同草案.docx", "fileext": "docx"}).decode(),
                      "from_chatroom": False}]
            return "chatrecord", {"title": "群聊的聊天记录", "item": items}
        if t == "todo":
            return "todo", {"title": "跟进客户需求", "content": self.text()}
        if t == "vote":
            return "vote", {"votetitle": "团建去哪里", "voteitem": ["爬山", "露营", "KTV"], "votetype": 101,
                            "voteid": f"{r.getrandbits(64):016x}"}
        if t == "collect":
            return "collect", {"room_name": "项目沟通群1", "creator": sender, "create_time": "2023-11-15 10:00:00",
                               "title": "满意度调查", "details": [{"id": 1, "ques": "您对服务满意吗", "type": "Text"},
                                                               {"id": 2, "ques": "联系电话", "type": "Number"}]}
        if t in ("redpacket", "external_redpacket"):
            return "redpacket", {"type": 1, "wish": r.choice(["恭喜发财，大吉大利", "感谢支持"]),
                                 "totalcnt": r.randint(1, 10), "totalamount": r.randint(100, 20000)}
        if t == "meeting":
            return "meeting", {"topic": "季度复盘会", "starttime": self.msgtime // 1000 + 3600,
                               "endtime": self.msgtime // 1000 + 7200, "address": "3楼会议室", "remarks": "请准时参加",
                               "meetingtype": 102, "meetingid": r.getrandbits(40), "status": 1}
        if t == "docmsg":
            return "doc", {"title": "客户跟进周报", "link_url": "https://doc.weixin.qq.com/doc/x",
                           "doc_creator": sender}
        if t == "markdown":
            return "info", {"content": "**通知**：系统将于今晚22:00维护"}
        if t == "news":
            return "info", {"item": [{"title": "行业快讯", "description": "本周市场回顾", "url": "https://example.com/n/1",
                                      "picurl": "https://example.com/p.png"}]}
        if t == "calendar":
            return "calendar", {"title": "客户拜访", "creatorname": "张三", "attendeename": ["李四", "王五"],
                                "starttime": self.msgtime // 1000 + 86400, "endtime": self.msgtime // 1000 + 90000,
                                "place": "客户公司", "remarks": "带上样品"}
        if t == "mixed":
            fid, md5, size = self._media(1024, 1, "image")
            image = {"md5sum": md5, "filesize": size, "sdkfileid": fid}
            return "mixed", {"item": [{"type": "text", "content": orjson.dumps({"content": self.text()}).decode()},
                                      {"type": "image", "content": orjson.dumps(image).decode()}]}
        if t == "meeting_voice_call":
            # the message states no md5sum or size: the content's size follows from the id
            fid = self._fileid()
            return "meeting_voice_call", {"endtime": self.msgtime // 1000 + 600, "sdkfileid": fid,
                                          "demofiledata": [], "sharescreendata": []}
        if t == "voip_doc_share":
            fid, md5, size = self._media(204800)
            return "voip_doc_share", {"filename": "演示文稿.pptx", "md5sum": md5, "filesize": size, "sdkfileid": fid}
        if t == "sphfeed":
            return "sphfeed", {"feed_type": 4, "sph_name": "某某官方视频号", "feed_desc": "新品发布会精彩回顾"}
        if t == "voiptext":
            return "info", {"callduration": r.randint(10, 900), "invitetype": 1}
        if t == "qydiskfile":
            return "info", {"filename": "微盘资料.zip"}
        if t == "meeting_notification":
            return "meeting_notification", {"meeting_id": r.getrandbits(40), "notification_type": 1}
        if t == "note":
            return "note", {"content": "记录一下客户的需求"}
        raise ValueError(t)

    def message(self, seq: int, t: str) -> tuple[str, dict]:
        r = self.rng
        ent = self.ent
        self.msgtime += r.randint(200, 120_000)
        msgid = f"{seq:x}{r.getrandbits(64):016x}_{self.msgtime}"
        if t == "switch":
            return msgid, {"msgid": msgid, "action": "switch", "time": self.msgtime, "user": r.choice(ent.employees)}
        roll = r.random()
        if self.replies and self.replies[0][0] <= self.msgtime and t not in ("agree", "disagree"):
            _, emp, cust = heapq.heappop(self.replies)  # the employee answers the customer
            sender, peers, roomid = emp, [cust], ""
        elif roll < 0.6:
            emp, cust = r.choice(ent.employees), r.choice(ent.customers)
            sender, peers, roomid = (emp, [cust], "") if r.random() < 0.6 else (cust, [emp], "")
            if sender == cust and r.random() < 0.995:
                u = r.random()  # reply times: most within minutes, a tail of slow ones (rule A-6)
                delay = (r.randint(15_000, 150_000) if u < 0.96 else r.randint(300_000, 1_800_000) if u < 0.99
                         else r.randint(1_800_000, 4 * 3_600_000))
                heapq.heappush(self.replies, (self.msgtime + delay, emp, cust))
        elif roll < 0.7:
            a, b = r.sample(ent.employees, 2)
            sender, peers, roomid = a, [b], ""
        else:
            g = r.choice(ent.groups)
            ids = [m["id"] for m in g["members"]]
            room = g["roomid"]
            quiet = ent.silent.get(room, set())
            if self.msgtime < ent.speak_after.get(room, 0):
                quiet = set(ent.archived)
            speakers = [i for i in ids if i not in quiet] or ids
            sender = r.choice(speakers)
            peers, roomid = [i for i in ids if i != sender], room
        msg = {"msgid": msgid, "action": "send", "from": sender, "tolist": peers, "roomid": roomid,
               "msgtime": self.msgtime, "msgtype": t}
        if t == "revoke":
            msg["action"] = "recall"
            msg["revoke"] = {"pre_msgid": r.choice(self.recent) if self.recent else msgid}
        elif t in ("agree", "disagree"):
            cust = r.choice(ent.customers)
            msg.update({"from": cust, "tolist": [r.choice(ent.archived)], "roomid": ""})
            msg[t] = {"userid": cust, f"{t}_time": self.msgtime}
        else:
            key, payload = self.payload(t, sender)
            if t == "meeting_voice_call":
                msg["voiceid"] = f"grb{r.getrandbits(64):016x}"
            if t in ("voip_doc_share", "voiptext"):
                msg["voipid"] = f"gr{r.getrandbits(64):016x}"
            msg[key] = payload
        self.recent.append(msgid)
        if len(self.recent) > 50:
            del self.recent[:25]
        return msgid, msg


def _write_keys(keys_dir: Path, versions: int) -> dict[int, bytes]:
    keys_dir.mkdir(parents=True, exist_ok=True)
    publics = {}
    for ver in range(1, versions + 1):
        pem = _core.generate_private_key(2048, pkcs8=ver != 1)
        (keys_dir / f"{ver}.pem").write_bytes(pem)
        publics[ver] = _core.public_key_of(pem)
    return publics


def simulate(out: str | Path, messages: int, seed: int = 1, key_versions: int = 2,
             doc_items: int = DOC_ITEMS, docs_per_file: int = DOCS_PER_FILE,
             service_requires_consent: bool = False) -> dict:
    """Writes a simulated enterprise to ``out``; returns a summary."""
    if messages < 0:
        raise ValueError("messages must be >= 0")
    if not 1 <= doc_items <= 1000:
        raise ValueError("doc_items must be between 1 and 1000 (GetChatData's limit)")
    out = Path(out)
    (out / "batches").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    # the stream's time span grows with N (about 40 s between messages on average)
    ent = build_enterprise(rng, service_requires_consent=service_requires_consent,
                           span_ms=max(86_400_000, messages * 40_000))
    reference = ConsentReference(ent.directory)
    kept_by_rule: dict[str, int] = {}
    dropped_by_rule: dict[str, int] = {}
    (out / "directory.json").write_bytes(orjson.dumps(ent.directory, option=orjson.OPT_INDENT_2))
    publics = _write_keys(out / "keys", key_versions)
    stream = _Stream(rng, ent)
    weights = list(_TYPE_WEIGHTS.values())
    per_version = max(1, -(-messages // key_versions))
    types_seen: dict[str, int] = {}
    seq = 0
    doc_no = 0
    pending: Future[bytes] | None = None
    files = []
    fh = None
    with open(out / "truth.jsonl", "wb") as truth, open(out / "expected.jsonl", "wb") as expected, \
            ThreadPoolExecutor(1) as pool:
        written = 0

        def flush(f: Future[bytes]) -> None:
            nonlocal fh, written
            if written % docs_per_file == 0:
                if fh is not None:
                    fh.close()
                path = out / "batches" / f"chatdata-{len(files) + 1:04d}.jsonl"
                files.append(path)
                fh = open(path, "wb")  # noqa: SIM115 - closed when the next file starts
            fh.write(f.result() + b"\n")
            written += 1

        produced = 0
        while produced < messages:
            items = []
            lines = []
            for _ in range(min(doc_items, messages - produced)):
                # every type appears early, whatever N; then the weighted mix
                t = ALL_TYPES[produced] if produced < len(ALL_TYPES) else rng.choices(ALL_TYPES, weights)[0]
                seq += rng.choice((1, 1, 1, 1, 2))  # seqs increase strictly, with gaps
                msgid, msg = stream.message(seq, t)
                plain = orjson.dumps(msg)
                ver = min(key_versions, produced // per_version + 1)
                items.append((seq, msgid, ver, plain))
                line = b'{"seq":%d,' % seq + plain[1:] + b"\n"
                lines.append(line)
                keep, rule = reference.judge(msg)
                if keep:
                    expected.write(line)
                    kept_by_rule[rule] = kept_by_rule.get(rule, 0) + 1
                else:
                    dropped_by_rule[rule] = dropped_by_rule.get(rule, 0) + 1
                types_seen[t] = types_seen.get(t, 0) + 1
                produced += 1
            truth.writelines(lines)
            fut = pool.submit(_core.seal_response, publics, items)
            doc_no += 1
            if pending is not None:
                flush(pending)
            pending = fut
        if pending is not None:
            flush(pending)
        if fh is not None:
            fh.close()
    rules = {"kept_by_rule": dict(sorted(kept_by_rule.items())),
             "dropped_by_rule": dict(sorted(dropped_by_rule.items()))}
    (out / "expected_rules.json").write_bytes(orjson.dumps(rules, option=orjson.OPT_INDENT_2))
    return {"out": str(out), "messages": messages, "documents": doc_no, "files": len(files),
            "key_versions": key_versions, "last_seq": seq, "msgtypes": dict(sorted(types_seen.items())),
            "archivable": sum(kept_by_rule.values()), **rules}
