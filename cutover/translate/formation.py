"""Heroku's formation (counts and dyno sizes, live or from app.json) -> ``scale``."""

from __future__ import annotations

from typing import Any

from cutover.catalog import dyno_size
from cutover.translate.facts import LiveFacts
from cutover.translate.model import FindingLog, input_error
from cutover.translate.sources import ProcessType, SourceTree

__all__ = ["Formation", "formation", "scale"]

Formation = dict[str, tuple[int | None, str | None]]  # Heroku type -> (quantity, size)


def formation(
    tree: SourceTree, facts: LiveFacts | None, processes: list[ProcessType], log: FindingLog
) -> tuple[dict[str, tuple[int | None, str | None]], str | None]:
    """Heroku type -> (quantity, size), and where it came from."""
    known = {p.name for p in processes}
    if facts is not None and facts.formation:
        out: dict[str, tuple[int | None, str | None]] = {}
        for fact in facts.formation:
            if fact.type not in known:
                if fact.quantity > 0:
                    log.add(
                        "formation-extra",
                        "warning",
                        fact.type,
                        f'Heroku runs {fact.quantity} "{fact.type}" dyno(s), but the '
                        "sources define no such process type",
                        "The deployed code is not this folder's code, or the type was removed "
                        "without scaling it down; translate the code you will deploy.",
                    )
                continue
            out[fact.type] = (fact.quantity, fact.size)
        return out, "live formation"
    app_json = tree.app_json
    if app_json is not None and app_json.formation:
        out = {}
        for spec in app_json.formation:
            if spec.type not in known:
                raise input_error(
                    app_json.path,
                    f'process type "{spec.type}" is not in the '
                    f"{'heroku.yml' if tree.heroku_yml else 'Procfile'}",
                    line=spec.line,
                    field=f"formation.{spec.type}",
                )
            out[spec.type] = (spec.quantity, spec.size)
        return out, app_json.path
    return {}, None


def scale(
    log: FindingLog,
    process: ProcessType,
    service: str,
    formation: dict[str, tuple[int | None, str | None]],
    formation_source: str | None,
) -> dict[str, Any]:
    quantity, size = formation.get(process.name, (None, None))
    scale: dict[str, Any] = {}
    if quantity is None:
        quantity = 1
        if formation_source == "live formation":
            log.add(
                "formation-missing",
                "guess",
                service,
                f'the running app has no formation for "{process.name}"; count 1 assumed',
                "The process type is new (not deployed on Heroku yet): check the count.",
            )
    scale["count"] = quantity
    if size:
        known = dyno_size(size)
        if known is None:
            log.add(
                "dyno-size-unknown",
                "warning",
                service,
                f'dyno size "{size}" is not in the size table; cpu and memory left to '
                "Convox's defaults (250 millicores, 512 MB)",
                "Set scale.cpu (millicores) and scale.memory (MB) to what the process needs.",
            )
        else:
            scale["cpu"] = known.cpu
            scale["memory"] = known.memory
    return scale


# -- add-ons and resources ------------------------------------------------------------------
