"""The pure parts of `run --workers`: restart delays, crash loops, summed metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from trioqueue._parent._metrics import merge
from trioqueue._parent._restart import CRASH_LIMIT, CRASH_WINDOW, Restarts, SlotBackoff


def test_restart_delays_double_up_to_30s_and_reset_after_a_healthy_minute() -> None:
    slot = SlotBackoff()
    delays = [slot.next_delay(ran_for=1.0, rand=0.5) for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert slot.next_delay(ran_for=61.0, rand=0.5) == 0.5


def test_restart_delays_are_jittered_by_a_quarter() -> None:
    low = SlotBackoff().next_delay(ran_for=0.0, rand=0.0)
    high = SlotBackoff().next_delay(ran_for=0.0, rand=0.999999)
    assert low == 0.375 and 0.62 < high <= 0.625


def test_five_crashes_within_a_minute_make_a_crash_loop() -> None:
    restarts = Restarts()
    assert [restarts.crashed(t) for t in (0.0, 1.0, 2.0, 3.0)] == [False] * 4
    assert restarts.crashed(4.0)
    assert restarts.total == 5


def test_crashes_spread_over_more_than_a_minute_are_bad_luck() -> None:
    restarts = Restarts()
    step = CRASH_WINDOW / (CRASH_LIMIT - 1) + 0.1
    assert not any(restarts.crashed(i * step) for i in range(20))


def exposition(*lines: str) -> str:
    return "\n".join(lines) + "\n"


CHILD_A = exposition(
    "# HELP trioqueue_jobs_total Jobs settled.",
    "# TYPE trioqueue_jobs_total counter",
    'trioqueue_jobs_total{outcome="succeeded",queue="q"} 3.0',
    "# HELP trioqueue_queue_backlog Backlog.",
    "# TYPE trioqueue_queue_backlog gauge",
    'trioqueue_queue_backlog{partition="0",queue="q"} 7.0',
    "# HELP trioqueue_broker_up Up.",
    "# TYPE trioqueue_broker_up gauge",
    "trioqueue_broker_up 1.0",
    "# HELP trioqueue_job_duration_seconds Run time.",
    "# TYPE trioqueue_job_duration_seconds histogram",
    'trioqueue_job_duration_seconds_bucket{le="0.1",queue="q"} 2.0',
    'trioqueue_job_duration_seconds_bucket{le="+Inf",queue="q"} 3.0',
    'trioqueue_job_duration_seconds_count{queue="q"} 3.0',
    'trioqueue_job_duration_seconds_sum{queue="q"} 0.5',
)
CHILD_B = (
    CHILD_A.replace("} 3.0", "} 4.0")
    .replace("} 7.0", "} 5.0")
    .replace("up 1.0", "up 0.0")
    .replace("} 0.5", "} 1.5")
)


def rendered(families: list[Metric]) -> str:
    class Fixed:
        def collect(self) -> list[Metric]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry).decode()


def test_merge_sums_counters_and_histograms() -> None:
    text = rendered(merge([CHILD_A, CHILD_B]))
    assert 'trioqueue_jobs_total{outcome="succeeded",queue="q"} 7.0' in text
    assert "# TYPE trioqueue_jobs_total counter" in text
    assert 'trioqueue_job_duration_seconds_bucket{le="+Inf",queue="q"} 7.0' in text
    assert 'trioqueue_job_duration_seconds_sum{queue="q"} 2.0' in text


def test_merge_keeps_one_view_of_the_broker() -> None:
    """The backlog every child reads from the same broker is not multiplied; the broker
    is up only if every child reaches it."""
    text = rendered(merge([CHILD_A, CHILD_B]))
    assert 'trioqueue_queue_backlog{partition="0",queue="q"} 7.0' in text
    assert "trioqueue_broker_up 0.0" in text


def test_merge_of_one_child_is_that_child() -> None:
    text = rendered(merge([CHILD_A]))
    assert 'trioqueue_jobs_total{outcome="succeeded",queue="q"} 3.0' in text
    assert rendered(merge([])) == ""
