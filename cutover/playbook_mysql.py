"""The playbook's ``mysql:`` section (issue 14): a ClearDB / JawsDB add-on's data copied to the
Convox mysql resource by the steps check-mysql, initial-sync-mysql, final-sync-mysql and
verify-mysql (cutover/steps/mysql.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MysqlSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    copy_data: bool = Field(
        default=True,
        alias="copy",
        description="Copy the Heroku app's MySQL add-on (ClearDB, JawsDB) into the Convox "
        "resource. false: not copied; check-mysql then says the Convox database stays empty. "
        "The steps do nothing when the app has no such add-on.",
    )
    resource: str | None = Field(
        default=None,
        min_length=1,
        description="The Convox resource to copy into; default: the manifest's only resource "
        "of type mysql, mariadb, rds-mysql or rds-mariadb (`cutover translate` names it after "
        "the add-on, e.g. cleardb-database or jawsdb).",
    )
    config_var: str | None = Field(
        default=None,
        description="The Heroku config var holding the add-on's URL; default: the add-on's own "
        "(CLEARDB_DATABASE_URL, JAWSDB_URL, JAWSDB_MARIA_URL: catalog/addons.json).",
    )
    verify: Literal["counts", "checksums"] = Field(
        default="checksums",
        description="verify-mysql: exact row counts only, or also a row hash per table computed "
        "the same way on both servers.",
    )
    timeout: int = Field(
        default=3600, ge=10, description="Seconds allowed for each dump, load and verify query."
    )
