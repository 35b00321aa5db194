"""Translate a Heroku app (Procfile, app.json, heroku.yml, live facts) into convox.yml.

``cutover translate`` and ``cutover init`` call :func:`run_translate` and :func:`run_init`;
the heroku adapter builds :class:`LiveFacts` with :func:`facts_from_heroku_json`.
"""

from cutover.translate.commands import run_init, run_translate
from cutover.translate.facts import LiveFacts, facts_from_heroku_json, load_facts_file
from cutover.translate.mapping import DYNO_SIZES, translate
from cutover.translate.model import Finding, TimerSpec, TranslateOptions, Translation
from cutover.translate.schedules import parse_timer_option, timer_specs_from_playbook
from cutover.translate.sources import read_sources

__all__ = [
    "DYNO_SIZES",
    "Finding",
    "LiveFacts",
    "TimerSpec",
    "TranslateOptions",
    "Translation",
    "facts_from_heroku_json",
    "load_facts_file",
    "parse_timer_option",
    "read_sources",
    "run_init",
    "run_translate",
    "timer_specs_from_playbook",
    "translate",
]
