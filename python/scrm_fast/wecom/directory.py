"""The directory from WeCom's contact and chat-archive APIs: the same document as
``directory.json`` (``wecom-archive.md`` §6), which the consent policy, alerts and scopes
already use.

What the APIs tell: departments; current members (``user/list``; resigned members are not
listed — they come from ``get_unassigned_list`` with their ``dimission_time``, or from the
previous directory); who has archiving on (``get_permit_user_list``); each member's
customers (``batch/get_by_user``); customer groups with owner and members; consent answers
(``check_single_agree`` for every follow-up pair, ``check_room_agree`` per group). What they
do not tell is kept from the previous directory: names of members who have left, group
owner history (a change seen now is appended with the time it was seen), the corp's name and
its consent switch, collaborators."""

from __future__ import annotations

import asyncio

from scrm_fast.wecom.client import WeComClient

RESIGNED = 5  # user/list status: 1 active, 2 disabled, 4 not activated, 5 left the enterprise


async def fetch_directory(client: WeComClient, previous: dict | None, now_ms: int, *, concurrency: int = 8) -> dict:
    prev = previous or {}
    prev_corp = prev.get("corp", {})
    prev_emps = {e["userid"]: e for e in prev.get("employees", [])}
    prev_customers = {c["external_userid"]: c for c in prev.get("customers", [])}
    prev_groups = {g["roomid"]: g for g in prev.get("groups", [])}

    depts = await client.departments()
    root = min((d["id"] for d in depts if not d.get("parentid")), default=1)
    users, permit, unassigned = await asyncio.gather(client.users(root), client.permit_users(), client.unassigned())
    permit_set = set(permit)

    employees: dict[str, dict] = {}
    for u in users:
        if u.get("status") == RESIGNED:
            continue
        dept = u.get("main_department") or (u.get("department") or [0])[0]
        leaders = u.get("direct_leader") or []
        employees[u["userid"]] = {"userid": u["userid"], "name": u.get("name", ""), "department": dept,
                                  "archived": u["userid"] in permit_set, "status": "active",
                                  "resigned_at": None, "leader": leaders[0] if leaders else None}
    dimission = {}
    for row in unassigned:
        t = int(row.get("dimission_time", 0)) * 1000
        dimission[row["handover_userid"]] = min(t, dimission.get(row["handover_userid"], t))
    gone = (set(dimission) | set(prev_emps)) - set(employees)
    for uid in sorted(gone):
        p = prev_emps.get(uid, {})
        resigned_at = dimission.get(uid) or p.get("resigned_at") or now_ms
        employees[uid] = {"userid": uid, "name": p.get("name", ""), "department": p.get("department", 0),
                          "archived": uid in permit_set or bool(p.get("archived", False)), "status": "resigned",
                          "resigned_at": resigned_at, "leader": p.get("leader")}

    active = [uid for uid, e in employees.items() if e["status"] == "active"]
    customers: dict[str, dict] = {}

    def follow(ext: str, userid: str, name: str | None) -> None:
        c = customers.get(ext)
        if c is None:
            p = prev_customers.get(ext, {})
            c = customers[ext] = {"external_userid": ext, "name": name or p.get("name", ""), "follow_users": [],
                                  "collaborators": list(p.get("collaborators", []))}
        elif name and not c["name"]:
            c["name"] = name
        if userid not in c["follow_users"]:
            c["follow_users"].append(userid)

    for item in await client.customers_of(active):
        ec, fi = item.get("external_contact", {}), item.get("follow_info", {})
        if ec.get("external_userid") and fi.get("userid"):
            follow(ec["external_userid"], fi["userid"], ec.get("name"))
    for row in unassigned:  # a resigned member's customers stay theirs until handed over
        follow(row["external_userid"], row["handover_userid"], None)

    sem = asyncio.Semaphore(concurrency)

    async def name_of(c: dict) -> None:
        async with sem:
            c["name"] = (await client.get_external_contact(c["external_userid"])).get("name", "")

    # customers only a resigned member follows: their names are not in the unassigned list
    await asyncio.gather(*(name_of(c) for c in customers.values() if not c["name"]))

    async def group(chat_id: str) -> dict:
        async with sem:
            return await client.group_chat(chat_id)

    chats = await asyncio.gather(*(group(cid) for cid in await client.group_chat_ids()))
    groups = []
    for g in chats:
        if not g.get("chat_id"):
            continue
        p = prev_groups.get(g["chat_id"], {})
        changes = list(p.get("owner_changes", []))
        if p and p.get("owner") != g.get("owner"):
            changes.append({"owner": g.get("owner", ""), "time": now_ms})
        groups.append({"roomid": g["chat_id"], "name": g.get("name", ""), "owner": g.get("owner", ""),
                       "members": [{"id": m["userid"], "join_time": int(m.get("join_time", 0)) * 1000}
                                   for m in g.get("member_list", [])],
                       "owner_changes": changes})

    pairs = [(u, ext) for ext, c in customers.items() for u in c["follow_users"] if u in employees]
    consent = {(c.get("userid", ""), c["external_userid"], c["status"], c["time"]): c
               for c in prev.get("consent", [])}
    for a in await client.check_single_agree(pairs):
        c = {"userid": a.get("userid", ""), "external_userid": a["exteranalopenid"], "status": a["agree_status"],
             "time": int(a.get("status_change_time", 0)) * 1000}
        consent[(c["userid"], c["external_userid"], c["status"], c["time"])] = c

    async def room(roomid: str) -> list[dict]:
        async with sem:
            return [{"userid": "", "external_userid": a["exteranalopenid"], "status": a["agree_status"],
                     "time": int(a.get("status_change_time", 0)) * 1000, "roomid": roomid}
                    for a in await client.check_room_agree(roomid)]

    for answers in await asyncio.gather(*(room(g["roomid"]) for g in groups)):
        for c in answers:
            consent[(c["userid"], c["external_userid"], c["status"], c["time"])] = c

    return {
        "corp": {"corpid": client.corpid, "name": prev_corp.get("name", ""),
                 "service_requires_consent": bool(prev_corp.get("service_requires_consent", False))},
        "departments": [{"id": d["id"], "name": d.get("name", ""), "parent": d.get("parentid", 0)} for d in depts],
        "employees": list(employees.values()),
        "customers": list(customers.values()),
        "groups": groups,
        "consent": sorted(consent.values(), key=lambda c: (c["time"], c["external_userid"], c["userid"])),
        "source": {"wecom": True, "at": now_ms},
    }
