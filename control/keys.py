"""Typed application keys: the shared state of the control plane."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from control.accounts import AccountService, User
from control.api import ReadCosts
from control.archive import ArchiveViews
from control.config import ControlConfig
from control.jobs import IngestJobs
from dialer.service import Dialer
from scrm_fast.reads import Receipt
from scrm_fast.storage import ArchiveStore, GroupCommit
from scrm_fast.trail import AccessTrail

CONFIG = web.AppKey("config", ControlConfig)
ACCOUNTS = web.AppKey("accounts", AccountService)
STORE = web.AppKey("store", ArchiveStore)
VIEWS = web.AppKey("views", ArchiveViews)
TRAIL = web.AppKey("trail", AccessTrail)
JOBS = web.AppKey("jobs", dict)  # this process's background tasks
INGEST_JOBS = web.AppKey("ingest_jobs", IngestJobs)  # the durable upload jobs
METRICS = web.AppKey("metrics", dict)
# archive reads (search, pages): few threads, so fewer threads fight over the GIL
READS = web.AppKey("reads", ThreadPoolExecutor)
# how long each kind of read took last time: cheap ones run on the loop (control.api)
READ_COSTS = web.AppKey("read_costs", ReadCosts)

DIALER = web.AppKey("dialer", Dialer)
# the process's group commit for decisions (dialer; quotas and pools to come)
COMMITS = web.AppKey("commits", GroupCommit)

# per request: who is calling, with which token
USER = web.RequestKey("user", User)
TOKEN = web.RequestKey("token", dict)
DEVICE = web.RequestKey("device", str)  # the dialer device calling (its id)
RECEIPT = web.RequestKey("receipt", Receipt)  # the trail entry this request wrote
