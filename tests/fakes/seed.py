"""The starting world of the engine tests: a Heroku app with Postgres, Redis and Papertrail, a
Convox rack without the app, and the data fingerprint of the Heroku database.

Every secret is a fresh random value with a recognisable prefix, so a test can search every
output for it and a chance match is impossible.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

HEROKU_APP = "acme-shop"
CONVOX_APP = "shop"
RACK = "acme/production"
RACK_DOMAIN = "rack.test"
ROUTER = f"router.{RACK_DOMAIN}"
DB_ADDON = "postgresql-curly-12345"
DB_HOST = "ec2-3-91-12-34.compute-1.amazonaws.test"
DB_PORT = 5432


def _token(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(nbytes)}"


@dataclass(frozen=True)
class Secrets:
    """Every secret value the world holds (what must never show in cutover's outputs)."""

    secret_key_base: str = field(default_factory=lambda: _token("skb", 24))
    stripe_key: str = field(default_factory=lambda: _token("sk_live_"))
    papertrail_token: str = field(default_factory=lambda: _token("ptk"))
    # '@' and '/' must be percent-encoded in the URL: the masker has to catch both spellings.
    heroku_db_password: str = field(default_factory=lambda: _token("hpw") + "@/" + _token("x", 4))
    redis_password: str = field(default_factory=lambda: _token("rpw"))
    convox_db_password: str = field(default_factory=lambda: _token("cpw"))
    heroku_api_key: str = field(default_factory=lambda: _token("hak"))

    # Fixed names: two worlds must produce byte-identical dumps (same sha256 in outputs).
    heroku_db_user = "u4f8e2c1d9a"
    heroku_db_name = "d7kq2m9x4p1"

    @property
    def heroku_database_url(self) -> str:
        return (
            f"postgres://{self.heroku_db_user}:{quote(self.heroku_db_password, safe='')}"
            f"@{DB_HOST}:{DB_PORT}/{self.heroku_db_name}"
        )

    @property
    def redis_url(self) -> str:
        return f"redis://h:{self.redis_password}@ec2-3-91-12-35.compute-1.amazonaws.test:6379"

    def values(self) -> dict[str, str]:
        """Name -> value of every secret, including the URLs that embed passwords."""
        out = asdict(self)
        out["heroku_database_url"] = self.heroku_database_url
        out["redis_url"] = self.redis_url
        out["heroku_db_password_encoded"] = quote(self.heroku_db_password, safe="")
        return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def table(rows: int, version: str = "v1", name: str = "") -> dict[str, Any]:
    return {"rows": rows, "md5": _md5(f"{name}:{rows}:{version}")}


def source_data() -> dict[str, Any]:
    """The Heroku database: tables (quote_ident-ed names) and sequence positions."""
    names = {
        "public.users": 1200,
        "public.orders": 5321,
        'public."AuditLog"': 77,
        "public.schema_migrations": 42,
    }
    return {
        "tables": {name: table(rows, name=name) for name, rows in names.items()},
        "sequences": {"public.users_id_seq": "1200", "public.orders_id_seq": "5321"},
    }


def empty_data() -> dict[str, Any]:
    return {"tables": {}, "sequences": {}}


def new_world(values: Secrets, storage_port: int) -> dict[str, Any]:
    """The world before any cutover: Heroku live, the Convox app not created yet."""
    config = {
        "DATABASE_URL": values.heroku_database_url,
        "REDIS_URL": values.redis_url,
        "SECRET_KEY_BASE": values.secret_key_base,
        "STRIPE_SECRET_KEY": values.stripe_key,
        "PAPERTRAIL_API_TOKEN": values.papertrail_token,
        "RAILS_ENV": "production",
        "RAILS_SERVE_STATIC_FILES": "enabled",
        "WEB_CONCURRENCY": "2",
        "HEROKU_SLUG_COMMIT": "0123456789abcdef0123456789abcdef01234567",
    }
    app_ref = {"id": "01234567-89ab-cdef-0123-456789abcdef", "name": HEROKU_APP}
    addons = [
        {
            "addon_service": {"id": "s-pg", "name": "heroku-postgresql"},
            "config_vars": ["DATABASE_URL"],
            "id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "name": DB_ADDON,
            "app": app_ref,
            "state": "provisioned",
            "plan": {"id": "p-pg", "name": "heroku-postgresql:standard-0"},
            "billed_price": {"cents": 5000, "contract": False, "unit": "month"},
        },
        {
            "addon_service": {"id": "s-redis", "name": "heroku-redis"},
            "config_vars": ["REDIS_URL"],
            "id": "bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee",
            "name": "redis-shaped-67890",
            "app": app_ref,
            "state": "provisioned",
            "plan": {"id": "p-redis", "name": "heroku-redis:premium-0"},
            "billed_price": {"cents": 1500, "contract": False, "unit": "month"},
        },
        {
            "addon_service": {"id": "s-pt", "name": "papertrail"},
            "config_vars": ["PAPERTRAIL_API_TOKEN"],
            "id": "cccccccc-bbbb-cccc-dddd-eeeeeeeeeeee",
            "name": "papertrail-round-11111",
            "app": app_ref,
            "state": "provisioned",
            "plan": {"id": "p-pt", "name": "papertrail:choklad"},
            "billed_price": {"cents": 0, "contract": False, "unit": "month"},
        },
    ]
    return {
        "heroku": {
            "app": HEROKU_APP,
            "app_id": app_ref["id"],
            "maintenance": False,
            "maintenance_on_at": None,
            "formation": [
                {
                    "type": "web",
                    "quantity": 2,
                    "size": "standard-1X",
                    "command": "bundle exec puma -C config/puma.rb",
                },
                {
                    "type": "worker",
                    "quantity": 1,
                    "size": "standard-2X",
                    "command": "bundle exec sidekiq",
                },
            ],
            "config": config,
            "addons": addons,
            "database": {
                "addon": DB_ADDON,
                "host": DB_HOST,
                "port": DB_PORT,
                "user": values.heroku_db_user,
                "password": values.heroku_db_password,
                "dbname": values.heroku_db_name,
                "data": source_data(),
            },
            "backups": [],
        },
        "convox": {
            "rack": RACK,
            "rack_domain": RACK_DOMAIN,
            "version": "3.21.3",
            "resource_password": values.convox_db_password,
            "apps": {},
            "proxies": {},
        },
        "storage": {"port": storage_port},
        "seq": {},
        "hooks": {},
    }
