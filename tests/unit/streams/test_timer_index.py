"""The timer index: a partition's event-time clock never runs more than the configured skew
past the broker time of the records that move it, so a future-dated event fires no timer of
its partition early."""

from touchstream.config.rules import load_rules
from touchstream.domain.identity import home_of
from touchstream.domain.linking import handle
from touchstream.simulator.factory import internal
from touchstream.streams.timer_index import SKEW_WINDOW_MS, TimerIndex, resume_clock

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_795_083_600_000  # 2026-11-19T10:20:00Z
SKEW = 5 * MIN


def event(at: int, rt: int | None) -> dict:
    msg: dict = {"k": "ev", "at": at}
    if rt is not None:
        msg["rt"] = rt
    return msg


def test_a_future_dated_event_moves_the_clock_only_to_its_broker_time_plus_the_skew():
    index = TimerIndex(SKEW)
    index.track(0, T0 + HOUR, "cart-owner")  # a cart reminder an hour away
    index.advance_event(0, event(T0, T0 + 1_000), T0 + 2_000)

    msg = event(T0 + 23 * HOUR, T0 + 2_000)  # another shopper, dated 23 hours ahead
    clock = index.advance_event(0, msg, T0 + 3_000)

    assert clock == T0 + 2_000 + SKEW
    assert msg["ct"] == T0 + 2_000 + SKEW and msg["at"] == T0 + 23 * HOUR
    assert index.due(0) == []  # the reminder waits for its hour
    index.advance_event(0, event(T0 + HOUR, T0 + HOUR + 500), T0 + HOUR + 1_000)
    assert index.due(0) == ["cart-owner"]


def test_the_clock_never_moves_back_and_other_partitions_keep_their_own():
    index = TimerIndex(SKEW)
    index.advance_event(0, event(T0 + 10 * MIN, T0 + 10 * MIN), T0)
    assert index.advance_event(0, event(T0 + HOUR, T0), T0) == T0 + 10 * MIN
    assert index.advance_event(1, event(T0 + HOUR, T0), T0) == T0 + SKEW
    assert index.clock(0) == T0 + 10 * MIN


def test_an_idle_tick_moves_on_from_the_capped_clock_not_the_claimed_time():
    index = TimerIndex(SKEW)
    index.advance_event(0, event(T0 + 24 * HOUR, T0), T0)
    assert index.idle_tick(0, T0 + 10_000, 5_000) == T0 + SKEW + 10_000


def test_a_privileged_command_moves_no_clock_and_fires_no_timer():
    """Commands come on the privileged input, read apart from ``touchpoints``: behind a
    backlog their few records come first, and the clock they set would end every session
    whose next events still wait (docs/domain.md, "Event time and timers")."""
    index = TimerIndex(SKEW)
    index.advance_event(0, event(T0, T0), T0)
    index.track(0, T0 + 30 * MIN, "browsing")  # a session's end
    later = event(T0 + 2 * HOUR, T0 + 2 * HOUR)
    grant = dict(later, type="consent_updated", props={"purposes": {"sms_marketing": True}})

    assert index.advance_event(0, grant, T0 + 1_000) is None
    assert "ct" not in grant  # so the state keeps no clock it set, for a rebuild to resume
    assert index.clock(0) == T0 and index.due(0) == []
    # nor does it count as traffic: the idle fallback still moves the clock on
    assert index.idle_tick(0, T0 + 10_000, 5_000) == T0 + 10_000
    # a partition that has seen only commands has no clock yet
    erasure = dict(event(T0, T0), type="erasure_requested", props={"request_id": "R-1"})
    assert index.advance_event(1, erasure, T0) is None and index.clock(1) is None
    # a withdrawal is no command (it is accepted on any input): it moves the clock
    withdrawal = dict(later, type="consent_updated", props={"purposes": {"sms_marketing": False}})
    assert index.advance_event(0, withdrawal, T0 + 2_000) == T0 + 2 * HOUR


def test_an_event_without_a_broker_time_moves_the_clock_to_its_claimed_time():
    index = TimerIndex(SKEW)
    assert index.advance_event(0, event(T0 + HOUR, None), T0) == T0 + HOUR


def test_the_skew_reported_is_the_largest_of_the_last_minute_or_two():
    index = TimerIndex(SKEW)
    wall = (T0 // SKEW_WINDOW_MS) * SKEW_WINDOW_MS
    assert index.skew(0, wall) is None
    index.advance_event(0, event(T0 + HOUR, T0), wall)
    index.advance_event(0, event(T0 - 1_000, T0), wall + 1_000)
    assert index.skew(0, wall + 2_000) == HOUR
    assert index.skew(0, wall + SKEW_WINDOW_MS + 1) == HOUR  # the window before still counts
    index.advance_event(0, event(T0, T0 + 2_000), wall + SKEW_WINDOW_MS + 5)
    assert index.skew(0, wall + 2 * SKEW_WINDOW_MS) == -2_000  # the hour-ahead one aged out
    assert index.skew(0, wall + 5 * SKEW_WINDOW_MS) is None
    assert index.skew(1, wall) is None


def test_a_rebuilt_clock_resumes_from_the_capped_time_never_a_future_claim():
    state = {"last_event_at": T0 + 24 * HOUR, "clock_at": T0 + SKEW}
    assert resume_clock(state, SKEW, T0 + MIN) == T0 + SKEW
    index = TimerIndex(SKEW)
    index.track(0, T0 + HOUR, "cart-owner")
    index.load(0, [(T0 + HOUR, "cart-owner")], resume_clock(state, SKEW, T0 + MIN), T0)
    assert index.due(0) == []


def test_a_profile_of_privileged_commands_alone_gives_a_rebuilt_index_no_clock():
    """A rebuild (a restart, a rebalance) must not bring back the clock a command did not set:
    a profile made by a consent grant dated two hours on tells nothing of its partition's time
    until a shopper's event is applied to it."""
    rules = load_rules(None)
    ids = {"loyalty_id": "L-1"}
    cid = home_of("loyalty_id", "L-1")
    grant = internal(
        cid, ids, "consent_updated", "g-1", 1, at=T0 + 2 * HOUR, purposes={"email_marketing": True}
    )
    index = TimerIndex(SKEW)
    assert index.advance_event(0, grant, T0) is None
    granted = handle(cid, None, grant, rules).store
    assert resume_clock(granted, SKEW, T0) is None

    view = internal(cid, ids, "page_view", "e-2", 2, at=T0 + MIN, url="/")
    index.advance_event(0, view, T0 + MIN)
    assert resume_clock(handle(cid, granted, view, rules).store, SKEW, T0) == T0 + MIN


def test_a_state_from_before_the_capped_time_resumes_no_further_than_the_skew_past_now():
    old = {"last_event_at": T0 + 24 * HOUR}
    assert resume_clock(old, SKEW, T0) == T0 + SKEW
    assert resume_clock({"last_event_at": T0 - HOUR}, SKEW, T0) == T0 - HOUR
    assert resume_clock({"last_event_at": None}, SKEW, T0) is None
    assert resume_clock(None, SKEW, T0) is None


def test_a_shopper_whose_every_event_moves_the_session_end_holds_one_entry_not_one_per_event():
    index = TimerIndex(SKEW)
    for i in range(1_000):  # each event pushes the session's end 30 minutes past itself
        index.track(0, T0 + i * MIN + 30 * MIN, "browser")
    assert len(index) == 1
    index.track(0, T0 - MIN, "browser")  # an earlier due time (a cart reminder) does get one
    assert len(index) == 2


def test_a_stale_entry_comes_up_once_and_the_customer_is_tracked_again_at_its_real_time():
    index = TimerIndex(SKEW)
    index.track(0, T0 + 30 * MIN, "browser")
    index.track(0, T0 + 50 * MIN, "browser")  # the session went on: its end moved later
    index.advance(0, T0 + 30 * MIN)
    assert index.due(0) == ["browser"]  # the first entry: nothing due yet, the caller re-tracks
    assert index.due(0) == []
    index.track(0, T0 + 50 * MIN, "browser")
    assert len(index) == 1
    index.advance(0, T0 + 50 * MIN)
    assert index.due(0) == ["browser"]


def test_an_undone_batch_puts_back_the_entries_it_took_and_removes_the_ones_it_added():
    index = TimerIndex(SKEW)
    index.track(0, T0 + MIN, "a")
    index.advance(0, T0 + MIN)
    index.undo.begin()
    assert index.due(0) == ["a"]
    index.track(0, T0 + 2 * MIN, "a")
    index.track(0, T0 + 3 * MIN, "b")
    index.undo.rollback()
    assert len(index) == 1
    assert index.due(0) == ["a"]  # back as it was before the batch
    index.track(0, T0 + 5 * MIN, "a")  # and it is tracked afresh once taken
    assert len(index) == 1


def test_a_partition_loaded_from_the_table_holds_each_customers_earliest_time_once():
    index = TimerIndex(SKEW)
    index.load(0, [(T0 + 2 * MIN, "a"), (T0 + MIN, "a"), (T0 + 3 * MIN, "b")], None, T0)
    assert len(index) == 2
    index.track(0, T0 + 2 * MIN, "a")  # later than its entry: nothing new
    assert len(index) == 2
    index.advance(0, T0 + MIN)
    assert index.due(0) == ["a"]
