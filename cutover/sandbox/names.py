"""The sandbox's fixed names: apps, rack, zone, record, databases (cutover/sandbox/manager.py
re-exports them; tests and the seeds read them from either)."""

HEROKU_APP = "myapp-sandbox"
CONVOX_APP = "myapp"
RACK = "sandbox"
RACK_DOMAIN = "sandbox.convox.test"
ROUTER = f"router.{RACK_DOMAIN}"
ZONE = "example.test"
RECORD = f"www.{ZONE}"
HEROKU_DNS_TARGET = "myapp-sandbox-1a2b.herokudns.test"
HEROKU_HOSTNAME = f"{HEROKU_APP}.herokuapp.test"
ORIGINAL_TTL = 20  # the record's TTL before lower-ttl; confirm-window waits it out
SOURCE_DB = "d8f3k2sandbox"
SOURCE_USER = "u4b1sandbox"
TARGET_DB = "app"
TARGET_USER = "app"
