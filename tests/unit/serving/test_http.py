"""The operations listener's readiness (serving/http.py) on fakes of what it asks: an operator
sees why a worker is not ready, with no Kafka, Redis or Faust app."""

from __future__ import annotations

from typing import Any, NamedTuple

from touchstream.serving.http import Readiness, register_views


class TP(NamedTuple):
    topic: str
    partition: int


class Pages:
    """Faust's app as ``register_views`` uses it: the views it registers, by path."""

    def __init__(self) -> None:
        self.views: dict[str, Any] = {}

    def page(self, path: str) -> Any:
        def register(view: Any) -> Any:
            self.views[path] = view
            return view

        return register


class View:
    def json(self, body: Any, status: int = 200) -> tuple[int, Any]:
        return status, body


async def ready_answer(**problems: Any) -> tuple[int, Any]:
    async def pong() -> bool:
        if problems.get("redis_down"):
            raise OSError("connection refused")
        return True

    ready = Readiness(
        recovered=lambda: True,
        output_problem=lambda: problems.get("output"),
        access_problem=lambda: problems.get("access"),
        halted=lambda: problems.get("halted", {}),
        api_serving=lambda: True,
        ping_redis=pong,
    )
    app = Pages()
    register_views(app, ready)
    answer: tuple[int, Any] = await app.views["/readyz"](View(), None)
    return answer


async def test_a_ready_worker_says_so_with_every_check() -> None:
    status, body = await ready_answer()
    assert status == 200 and body["ready"] is True
    assert set(body["checks"]) == {
        "partitions_recovered",
        "output_delivered",
        "redis",
        "kafka_access",
        "no_partition_halted",
        "customer_api",
    }


async def test_a_halted_partition_and_undelivered_output_are_named_in_the_answer() -> None:
    why = "broker refuses writes to touchstream.profiles.updates"
    status, body = await ready_answer(halted={TP("touchstream.customer-events", 3): 41}, output=why)
    assert status == 503 and body["ready"] is False
    assert body["halted"] == {"touchstream.customer-events[3]": 41}
    assert body["output"] == why
    assert body["checks"]["no_partition_halted"] is False
    assert body["checks"]["output_delivered"] is False
    assert body["checks"]["redis"] is True


async def test_redis_unreachable_makes_the_worker_not_ready() -> None:
    status, body = await ready_answer(redis_down=True)
    assert status == 503 and body["checks"]["redis"] is False
