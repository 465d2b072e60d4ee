"""HMAC key rotation on a real Redis (issue 28): after `touchstream keys rotate`, a lookup by a
known email or phone, computed with the new key set as the HTTP lookup computes it, finds the
same customer as before the rotation; a second run changes nothing.

DB 0 of the session Redis (the stacks of other tests use DBs 1-15), emptied first.
"""

from __future__ import annotations

import os
import subprocess
import sys

import redis

from touchstream.domain.identity import IdentityNormaliser
from touchstream.runtime.embedded import EmbeddedRedis
from touchstream.serving.keys import alias_key

OLD_KEY = "old-hmac-key-before-rotation-0123456789"
NEW_KEY = "new-hmac-key-after-rotation-0123456789"
CUSTOMERS = {
    ("email", "Ann@Example.com"): "ts-0123456789abcdef01234567",
    ("phone", "+49 170 1234567"): "ts-0123456789abcdef01234567",
    ("email", "bo@example.com"): "CRM-778",
}


def rotate(server: EmbeddedRedis) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TOUCHSTREAM_ENV": "development",
        "TOUCHSTREAM_REDIS_URL": server.url(0),
        "TOUCHSTREAM_HMAC_SECRET": OLD_KEY,
        "TOUCHSTREAM_HMAC_KEYS": f"v2:{NEW_KEY}",
    }
    return subprocess.run(
        [sys.executable, "-m", "touchstream.runtime.cli", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_after_rotation_a_known_identifier_finds_the_same_customer(
    redis_server: EmbeddedRedis,
) -> None:
    before = IdentityNormaliser(OLD_KEY)
    after = IdentityNormaliser({1: OLD_KEY, 2: NEW_KEY})
    client = redis.Redis.from_url(redis_server.url(0), decode_responses=True)
    try:
        client.flushdb()
        for (kind, raw), customer_id in CUSTOMERS.items():  # as the stream wrote them before
            client.set(alias_key(kind, before.normalise_value(kind, raw) or ""), customer_id)
        client.set(alias_key("loyalty_id", "L-1"), "CRM-778")  # not hashed: not touched

        result = rotate(redis_server)

        assert result.returncode == 0, result.stderr
        assert "moved to v2: 3" in result.stdout
        for (kind, raw), customer_id in CUSTOMERS.items():
            digest = after.normalise_value(kind, raw) or ""
            assert digest.startswith("v2:")
            assert client.get(alias_key(kind, digest)) == customer_id
            # the digest under the old key alone names nobody any more
            assert client.get(alias_key(kind, before.normalise_value(kind, raw) or "")) is None
        assert client.get(alias_key("loyalty_id", "L-1")) == "CRM-778"

        again = rotate(redis_server)

        assert again.returncode == 0, again.stderr
        assert "moved to v2: 0; already there: 3" in again.stdout
    finally:
        client.flushdb()
        client.close()
