"""Single writer: a lease row per nonce scope in the journal, renewed every tick, with an epoch
that grows on every takeover; every journal write is fenced by the writer's (owner, epoch)
(docs/postgresql.md: the semantics on both stores).

Two keeper processes on the same key and journal must never both send: a process without
the lease keeps observing (reads, plans, metrics) and says so (`lease_held_elsewhere`), and
the journal refuses to create an intent for a process that does not hold the lease, in the
same transaction that checks no other intent is unfinished.

A holder that died without releasing (SIGKILL, OOM) would block its successor until the
lease expires; when the holder ran on this host and its pid is gone, the successor takes
over at once. Owner ids carry a random part, so a recycled pid is not mistaken for the
same process.
"""

from __future__ import annotations

import os
import socket
import uuid


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True only when `owner` ran on this host and its process no longer exists."""
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False
