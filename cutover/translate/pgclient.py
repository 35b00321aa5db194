"""The PostgreSQL client service the ``in-rack`` data method runs (``--pg-client``).

``database.method: in-rack`` runs pg_dump and pg_restore inside the rack with ``convox run
<database.in_rack_service>`` (default ``pgclient``; cutover/steps/inrack.py). That needs a
service whose image carries the client tools of Heroku's major: ``image: postgres:<major>``
(pkg/build/docker.go builds it ``FROM`` the image; provider/k8s/process.go runs one-off pods of
it with the service's env), linked to the database resource by name so the pod gets
``<NAME>_HOST/_PORT/_USER/_PASS`` (pkg/manifest/resource.go), at ``scale.count`` 0 (no
container runs until the copy) and without a port (nothing routes to it).
"""

from __future__ import annotations

import re
from typing import Any

from cutover.translate.model import FindingLog

SERVICE = "pgclient"


def plan_pg_client(
    services: dict[str, dict[str, Any]],
    database: str | None,
    resource_specs: dict[str, dict[str, Any]],
    log: FindingLog,
) -> None:
    """Add the client service (``pgclient``, or ``pgclient-2``... when taken) to ``services``
    for the postgres resource ``database``; a finding says why, or why not."""
    if database is None:
        log.add(
            "pg-client-no-database",
            "info",
            SERVICE,
            "no Heroku Postgres database: no PostgreSQL client service is declared",
        )
        return
    version = str((resource_specs.get(database, {}).get("options") or {}).get("version") or "")
    match = re.match(r"(\d+)", version)
    if not match:
        log.add(
            "pg-client-version-unknown",
            "warning",
            SERVICE,
            "Heroku's PostgreSQL version is unknown, so no client service is declared for the "
            "in-rack copy",
            f"Add a service `{SERVICE}` with `image: postgres:<Heroku's major>`, "
            f"`resources: [{database}]` and `scale: {{count: 0}}`, or translate with "
            "--heroku-app so the version is read.",
        )
        return
    name = SERVICE
    counter = 2
    while name in services:
        name = f"{SERVICE}-{counter}"
        counter += 1
    major = match.group(1)
    services[name] = {
        "image": f"postgres:{major}",
        "scale": {"count": 0},
        "resources": [database],
    }
    log.add(
        "pg-client-service",
        "change",
        name,
        f'a "{name}" service (postgres:{major}, count 0) runs the in-rack data copy',
        f"It runs nothing until cutover's data steps start a one-off of it; set "
        f"database.in_rack_service: {name} in the playbook"
        + ("" if name == SERVICE else " (pgclient was taken)")
        + ".",
    )
