"""Running PostgreSQL's tools as the ``postgres`` user when we are root, and letting it reach
the data directory (see :mod:`cutover.sandbox.pgcluster` for the whole picture).

PostgreSQL refuses to run as root, so initdb and the server run as ``postgres``; every folder
above the data directory must let that user search. A folder at or below ``traverse_root`` that
does not gets one POSIX ACL entry ``user:postgres:--x`` (the xattr layout of
linux/posix_acl_xattr.h), with no change to the mode bits the owner and group see.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import struct
import subprocess
from pathlib import Path

__all__ = [
    "SERVER_USER",
    "PgClusterError",
    "ensure_reachable",
    "run_as",
    "server_account",
    "server_env",
]

log = logging.getLogger("cutover.sandbox.pgcluster")

SERVER_USER = "postgres"

# POSIX ACL xattr layout (linux/posix_acl_xattr.h): a version header, then (tag, perm, id).
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ = 0x01, 0x02, 0x04
_ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x08, 0x10, 0x20
_ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_EXECUTE = 0x01


class PgClusterError(RuntimeError):
    """A sandbox PostgreSQL cluster could not be created, started, stopped or reached."""


def server_account() -> pwd.struct_passwd | None:
    """The account the server must run as: postgres when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PgClusterError(
            f"running as root but there is no {SERVER_USER!r} system user to run PostgreSQL as"
        ) from None


def server_env(account: pwd.struct_passwd | None) -> dict[str, str]:
    """A small environment for initdb and the server (the caller's secrets stay out)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
    }
    if account is not None:
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    return env


def run_as(
    argv: list[str], account: pwd.struct_passwd | None, *, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=server_env(account),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=os.getgrouplist(account.pw_name, account.pw_gid) if account else None,
    )


# --- letting the postgres user reach the data directory ------------------------------------


def _first_blocked(folders: list[Path], account: pwd.struct_passwd) -> Path | None:
    """The first of ``folders`` (outermost first) that ``account`` cannot search, if any."""
    script = 'for d; do [ -x "$d" ] || { printf "%s" "$d"; exit 0; }; done'
    result = run_as(
        ["/bin/sh", "-c", script, "sh", *map(str, folders)], account, cwd=Path("/"), timeout=30
    )
    if result.returncode != 0:
        raise PgClusterError(f"cannot check folder access as {account.pw_name}: {result.stderr}")
    return Path(result.stdout) if result.stdout else None


def _grant_search(folder: Path, uid: int) -> None:
    """Add ``user:<uid>:--x`` to ``folder``'s access ACL (widening the mask by x only)."""
    try:
        raw: bytes | None = os.getxattr(folder, _ACL_XATTR)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise PgClusterError(
                f"cannot read the ACL of {folder} ({exc.strerror}); give user {SERVER_USER} "
                "search permission on it yourself or put the cluster elsewhere"
            ) from None
        raw = None
    entries: dict[tuple[int, int], int] = {}
    if raw:
        (version,) = struct.unpack_from("<I", raw)
        if version != _ACL_VERSION:
            raise PgClusterError(f"unexpected ACL format version {version} on {folder}")
        for offset in range(4, len(raw), 8):
            tag, perm, ident = struct.unpack_from("<HHI", raw, offset)
            entries[(tag, ident)] = perm
    else:
        mode = folder.stat().st_mode
        entries[(_ACL_USER_OBJ, _ACL_UNDEFINED_ID)] = (mode >> 6) & 7
        entries[(_ACL_GROUP_OBJ, _ACL_UNDEFINED_ID)] = (mode >> 3) & 7
        entries[(_ACL_OTHER, _ACL_UNDEFINED_ID)] = mode & 7
        entries[(_ACL_MASK, _ACL_UNDEFINED_ID)] = (mode >> 3) & 7
    entries[(_ACL_USER, uid)] = entries.get((_ACL_USER, uid), 0) | _ACL_EXECUTE
    mask_key = (_ACL_MASK, _ACL_UNDEFINED_ID)
    entries[mask_key] = entries.get(mask_key, 0) | _ACL_EXECUTE
    data = struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, ident) for (tag, ident), perm in sorted(entries.items())
    )
    try:
        os.setxattr(folder, _ACL_XATTR, data)
    except OSError as exc:
        raise PgClusterError(
            f"cannot give user {SERVER_USER} search permission on {folder} with an ACL "
            f"({exc.strerror}); do it yourself or put the cluster elsewhere"
        ) from None
    log.info("granted user %s search (x) on %s through an ACL entry", SERVER_USER, folder)


def ensure_reachable(target: Path, account: pwd.struct_passwd, traverse_root: Path) -> None:
    """Make every folder above ``target`` searchable by ``account`` (see module docstring)."""
    folders = [*reversed(target.parents), target]
    for _ in range(len(folders) + 1):
        blocked = _first_blocked(folders, account)
        if blocked is None:
            return
        if not blocked.is_relative_to(traverse_root) or blocked.stat().st_uid != os.geteuid():
            raise PgClusterError(
                f"user {account.pw_name} cannot reach {target}: {blocked} does not let it "
                f"traverse. Put the cluster under a folder it can reach, or pass a "
                f"traverse_root that includes {blocked} (an ACL entry will then be added)"
            )
        _grant_search(blocked, account.pw_uid)
    raise PgClusterError(f"user {account.pw_name} still cannot reach {target}")
