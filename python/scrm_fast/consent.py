"""Consent (rules C-0 … C-12): building the Rust ``ConsentPolicy`` from the tenant's
directory and persisted consent state, and the client for WeCom's consent APIs
(``msgaudit/check_single_agree``, ``msgaudit/check_room_agree``, spec §5).

The policy is built once per ingest; per-message decisions run inside the Rust batch
call. Without a directory the system cannot tell archived employees or groups apart, so
no policy applies and ingest says so in its summary.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from scrm_fast._core import ConsentPolicy
from scrm_fast.errors import InputError
from scrm_fast.storage import ArchiveStore

# WeCom accepts at most 100 (userid, external id) pairs per check_single_agree call.
SINGLE_AGREE_BATCH = 100


def build_policy(directory: dict | None, store: ArchiveStore) -> ConsentPolicy | None:
    """The consent policy for ``store``'s tenant, or None when no directory is known."""
    if directory is None:
        return None
    corp = directory.get("corp", {})
    employees = directory.get("employees", [])
    archived = [e["userid"] for e in employees if e.get("archived", True)]
    groups = [(g["roomid"], g["owner"], [(int(c["time"]), c["owner"]) for c in g.get("owner_changes", [])],
               [m["id"] if isinstance(m, dict) else m for m in g.get("members", [])])
              for g in directory.get("groups", [])]
    consent = [(c["external_userid"], int(c["time"]), c["status"]) for c in directory.get("consent", [])]
    consent_entries, spoken_entries = store.consent_state()
    try:
        return ConsentPolicy(bool(corp.get("service_requires_consent", False)), archived,
                             [e["userid"] for e in employees], groups, consent, consent_entries, spoken_entries)
    except (ValueError, TypeError) as e:
        raise InputError(f"directory: {e}") from e


@dataclass
class ConsentApi:
    """A client of WeCom's msgaudit consent APIs (JSON over HTTP(S), ``access_token``)."""

    base_url: str
    access_token: str
    timeout: float = 10.0

    def _post(self, path: str, body: dict) -> dict:
        url = f"{self.base_url.rstrip('/')}/{path}?{urllib.parse.urlencode({'access_token': self.access_token})}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.URLError as e:
            raise InputError(f"{path}: {e.reason}") from e
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: answer is not JSON: {e}") from e
        if doc.get("errcode", 0) != 0:
            raise InputError(f"{path}: errcode {doc.get('errcode')} ({doc.get('errmsg', '')})")
        return doc

    def check_single_agree(self, pairs: list[tuple[str, str]]) -> list[tuple[str, int, str]]:
        """(userid, external_userid) pairs → (external_userid, time ms, status) changes."""
        out = []
        for i in range(0, len(pairs), SINGLE_AGREE_BATCH):
            chunk = pairs[i:i + SINGLE_AGREE_BATCH]
            doc = self._post("msgaudit/check_single_agree",
                             {"info": [{"userid": u, "exteranalopenid": c} for u, c in chunk]})
            for item in doc.get("agreeinfo", []):
                out.append((item["exteranalopenid"], int(item.get("status_change_time", 0)) * 1000,
                            item["agree_status"]))
        return out

    def check_room_agree(self, roomid: str) -> list[tuple[str, int, str]]:
        doc = self._post("msgaudit/check_room_agree", {"roomid": roomid})
        return [(item["exteranalopenid"], int(item.get("status_change_time", 0)) * 1000,
                 item["agree_status_single"]) for item in doc.get("agreeinfo", [])]


def refresh_consent(api: ConsentApi, directory: dict, store: ArchiveStore) -> dict:
    """Asks the consent APIs about every (follow-up employee, customer) pair and every
    group of the directory, and stores the answers as consent changes (source ``api``)."""
    import msgpack

    pairs = [(u, c["external_userid"]) for c in directory.get("customers", []) for u in c.get("follow_users", [])]
    changes = [(*ch, "single") for ch in api.check_single_agree(pairs)]
    for g in directory.get("groups", []):
        changes += [(*ch, g["roomid"]) for ch in api.check_room_agree(g["roomid"])]
    entries = [(ConsentPolicy.consent_key(c, t, s), msgpack.packb({"status": s, "source": f"api:{src}"}))
               for c, t, s, src in changes]
    if entries:
        store.put_consent(entries)
    return {"pairs": len(pairs), "groups": len(directory.get("groups", [])), "changes": len(entries)}
