"""The steps of a cutover, in order. Ids are stable: later versions may insert steps between
them, never rename them (state files and --from/--until refer to them)."""

from __future__ import annotations

from cutover.steps.app import CreateApp, Deploy, SetEnv, SmokeTest
from cutover.steps.base import Context, Step
from cutover.steps.capture import CaptureChanges
from cutover.steps.confirm import ConfirmWindow
from cutover.steps.data import FinalSync, InitialSync
from cutover.steps.datacheck import CheckData
from cutover.steps.dns import SwitchDns
from cutover.steps.dnsverify import VerifyDns
from cutover.steps.domain import AddDomain
from cutover.steps.freeze import FreezeWrites
from cutover.steps.mysql import CheckMysql, FinalSyncMysql, InitialSyncMysql, VerifyMysql
from cutover.steps.preflight import Preflight
from cutover.steps.redis import InspectRedis, SyncRedis
from cutover.steps.scheduler import DisableScheduler
from cutover.steps.site import VerifySite
from cutover.steps.tls import TlsReady
from cutover.steps.ttl import LowerTtl, RestoreTtl, WaitTtl
from cutover.steps.verify import VerifyData
from cutover.steps.window import MaintenanceOn, ScaleDown
from cutover.steps.workers import StartWorkers

STEPS: list[Step] = [
    Preflight(),
    CreateApp(),
    SetEnv(),
    Deploy(),
    SmokeTest(),
    CheckData(),
    CheckMysql(),
    CaptureChanges(),
    InitialSync(),
    InitialSyncMysql(),
    LowerTtl(),
    AddDomain(),
    TlsReady(),
    WaitTtl(),
    ConfirmWindow(),
    DisableScheduler(),
    MaintenanceOn(),
    ScaleDown(),
    InspectRedis(),
    FreezeWrites(),
    FinalSync(),
    FinalSyncMysql(),
    SyncRedis(),
    VerifyData(),
    VerifyMysql(),
    SwitchDns(),
    VerifyDns(),
    VerifySite(),
    StartWorkers(),
    RestoreTtl(),
]
STEP_IDS = [s.id for s in STEPS]
BY_ID = {s.id: s for s in STEPS}

__all__ = ["BY_ID", "STEPS", "STEP_IDS", "Context", "Step"]
