"""Event time: occurred_at as RFC 3339 with an offset or epoch milliseconds, to the exact
millisecond, with implausible times refused."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from touchstream.domain.clock import MS_PER_DAY, MS_PER_HOUR, iso, parse_occurred_at
from touchstream.errors import SchemaViolation

# 2026-11-20T13:03:27.512Z
T = 1_795_179_807_512
NOW = T + MS_PER_HOUR
DAY = MS_PER_DAY
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YEAR_2100 = 4_102_444_800_000


def parse(value, now=NOW, tolerance=DAY):
    return parse_occurred_at(value, now, tolerance)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T13:03:27.512Z",
        "2026-11-20T14:03:27.512+01:00",
        "2026-11-20T12:03:27.512-01:00",
        "2026-11-20T18:33:27.512+05:30",
        "2026-11-20T13:03:27.512+00:00",
        "2026-11-20T13:03:27.512-00:00",
        "2026-11-20 13:03:27.512Z",
    ],
)
def test_rfc3339_with_z_or_offset_is_the_same_instant(text):
    assert parse(text) == T


def test_whole_seconds_and_long_fractions():
    assert parse("2026-11-20T13:03:27Z") == T - 512
    assert parse("2026-11-20T13:03:27.5123456Z") == T


@pytest.mark.parametrize("text", ["2026-11-20t13:03:27.512z", "2026-11-20T13:03:27.512z"])
def test_lower_case_t_and_z_are_rfc3339_too(text):
    # RFC 3339 section 5.6 allows "t" and "z"; the v1 schema pattern accepts [Tt] and [Zz]
    assert parse(text) == T


def test_epoch_milliseconds_are_taken_as_is():
    assert parse(T) == T
    assert parse(0) == 0


@pytest.mark.parametrize("text", ["2026-11-20T13:03:27.512", "2026-11-20 13:03:27", "2026-11-20"])
def test_timestamp_without_offset_is_refused(text):
    with pytest.raises(SchemaViolation) as error:
        parse(text)

    assert "occurred_at" in error.value.message
    assert "offset" in error.value.message


@pytest.mark.parametrize("text", ["20/11/2026 13:03", "yesterday", "2026-13-01T00:00:00Z", ""])
def test_garbage_is_refused_naming_the_field(text):
    with pytest.raises(SchemaViolation) as error:
        parse(text)

    assert "occurred_at" in error.value.message


@pytest.mark.parametrize("value", [None, 1.5e12, True, [T], {"ms": T}])
def test_other_json_types_are_refused(value):
    with pytest.raises(SchemaViolation) as error:
        parse(value)

    assert "occurred_at" in error.value.message


@pytest.mark.parametrize(
    "value",
    [-1, "1969-12-31T23:59:59Z", "1969-12-31T23:59:59.900Z", "1969-12-31T23:59:59.9995Z"],
)
def test_before_1970_is_refused(value):
    with pytest.raises(SchemaViolation) as error:
        parse(value)

    assert "1970" in error.value.message


def test_far_future_is_refused_stating_seconds():
    too_far = NOW + DAY + 5_000

    with pytest.raises(SchemaViolation) as error:
        parse(too_far)

    assert f"{DAY // 1000 + 5} s in the future" in error.value.message
    assert f"more than {DAY // 1000} s" in error.value.message


def test_future_up_to_the_tolerance_is_accepted_beyond_it_refused():
    assert parse(NOW + DAY) == NOW + DAY
    with pytest.raises(SchemaViolation):
        parse(NOW + 1, tolerance=0)


def test_iso_is_utc_with_milliseconds():
    assert iso(T) == "2026-11-20T13:03:27.512Z"
    assert iso(0) == "1970-01-01T00:00:00.000Z"


def test_iso_keeps_the_milliseconds_of_far_future_times():
    # seconds as a float lose the last millisecond here: 23:59:59.998
    assert iso(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"


@settings(database=None)
@given(st.integers(min_value=0, max_value=YEAR_2100))
def test_iso_round_trips_to_the_exact_millisecond(ms):
    assert parse(iso(ms), now=YEAR_2100, tolerance=0) == ms


@settings(database=None)
@given(st.integers(min_value=0, max_value=YEAR_2100))
def test_iso_names_the_same_instant(ms):
    assert datetime.fromisoformat(iso(ms)) == EPOCH + timedelta(milliseconds=ms)


def test_known_millisecond_is_not_lost_to_float_rounding():
    # 2004-06-25T08:30:14.593Z: seconds * 1000 in floating point gives ...592.99999
    assert parse("2004-06-25T08:30:14.593Z") == 1_088_152_214_593


def test_an_event_moves_the_clock_to_its_claimed_time_within_the_skew_of_its_broker_time():
    from touchstream.domain.clock import clock_time

    skew = 300_000
    assert clock_time(T, T + 5_000, skew) == T  # the usual: it happened before it arrived
    assert clock_time(T + skew, T, skew) == T + skew  # exactly at the bound
    assert clock_time(T + DAY, T, skew) == T + skew  # a day ahead: the clock waits
    assert clock_time(T + DAY, T, 0) == T
    assert clock_time(T + DAY, None, skew) == T + DAY  # written before ingest recorded rt
