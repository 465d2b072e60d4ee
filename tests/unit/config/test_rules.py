"""The rules file: the shipped defaults are the numbers of docs/domain.md, and a mistake in a
rules file stops start-up with a ConfigError naming the exact key."""

from pathlib import Path

import pytest

from touchstream.config.rules import (
    TRIGGER_TYPES,
    Rules,
    default_rules_text,
    load_rules,
    parse_rules,
)
from touchstream.errors import ConfigError

MEMBER_SILVER_GOLD = """
[[loyalty.tiers]]
name = "member"
min_spend_minor = 0
multiplier = 1.0

[[loyalty.tiers]]
name = "silver"
min_spend_minor = 35000
multiplier = 1.25
"""


@pytest.fixture(scope="module")
def defaults() -> Rules:
    return load_rules(None)


def test_tiers_are_member_silver_gold_at_0_350_1000_with_1_125_15(defaults):
    assert [(t.name, t.min_spend_minor, t.multiplier) for t in defaults.loyalty.tiers] == [
        ("member", 0, 1.0),
        ("silver", 35_000, 1.25),
        ("gold", 100_000, 1.5),
    ]


def test_loyalty_defaults(defaults):
    loyalty = defaults.loyalty
    assert loyalty.points_per_unit == 1
    assert loyalty.signup_bonus == 100
    assert (loyalty.expiry_days, loyalty.expiry_warning_days) == (365, 30)
    assert loyalty.tier_mode == "trailing_365"
    assert loyalty.tier_window_days == 365
    assert loyalty.grace_days == 30
    assert loyalty.vip_recency_days == 90
    assert loyalty.vip_max_lapse_days == 365
    assert loyalty.reward_thresholds == (500,)
    assert loyalty.campaigns == ()


def test_program_defaults_are_eur_with_two_decimals_in_utc(defaults):
    program = defaults.program
    assert (program.currency, program.currency_decimals, program.timezone) == ("EUR", 2, "UTC")
    assert program.minor_per_unit == 100
    assert program.exchange_rates == {}


def test_identity_defaults_are_segment_style_limits(defaults):
    identity = defaults.identity
    assert identity.blocked_values == ()
    assert (identity.max_customer_ids, identity.max_loyalty_ids) == (1, 1)
    assert (identity.max_emails, identity.max_phones, identity.max_devices) == (5, 5, 25)
    assert identity.anonymous_ttl_days == 30


def test_session_and_cart_defaults(defaults):
    assert (defaults.sessions.gap_minutes, defaults.sessions.max_hours) == (30, 24)
    assert defaults.sessions.browse_abandon_views == 3
    assert defaults.carts.min_value_minor == 100
    assert defaults.carts.reminder_delays_minutes == (60, 1440)


def test_rfm_defaults(defaults):
    rfm = defaults.rfm
    assert rfm.recency_days == (30, 60, 90, 180)
    assert rfm.frequency_orders == (10, 6, 3, 2, 1)
    assert rfm.monetary_minor == (200_000, 100_000, 50_000, 20_000, 1)
    assert rfm.window_days == 365
    assert (rfm.win_back_days, rfm.win_back_min_orders) == (90, 2)


def test_trigger_defaults(defaults):
    triggers = defaults.triggers
    assert triggers.freshness_hours == 24
    assert (triggers.frequency_cap, triggers.frequency_window_hours) == (3, 24)
    # the spec's cool-downs; every declared trigger type has one (domain/trigger_catalog.py)
    assert triggers.cooldown_hours["abandoned_cart"] == 16
    spec_types = (
        "browse_abandoned",
        "vip_status",
        "tier_downgrade_risk",
        "win_back",
        "points_expiring",
        "reward_unlocked",
    )
    assert all(triggers.cooldown_hours[kind] == 24 for kind in spec_types)
    assert set(triggers.cooldown_hours) == set(TRIGGER_TYPES)
    assert triggers.quiet_hours is None


def test_a_rules_file_naming_one_cooldown_keeps_every_other_types_default():
    # a retailer shortening the cart reminder's cool-down must not lift every other type's
    rules = parse_rules("[triggers.cooldown_hours]\nabandoned_cart = 2\nwin_back = 0\n")
    cooldowns = rules.triggers.cooldown_hours
    assert cooldowns["abandoned_cart"] == 2
    assert cooldowns["win_back"] == 0  # an explicit 0 stays 0
    assert cooldowns["vip_status"] == 24  # not named: the catalog's default
    assert set(cooldowns) == set(TRIGGER_TYPES)


def test_shipped_file_and_built_in_defaults_agree(defaults):
    # a partial rules file falls back to the built-in defaults for every key it omits
    assert parse_rules("") == defaults
    assert parse_rules(default_rules_text()) == Rules()


def test_a_rules_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[loyalty]\nsignup_bonus = 250\n\n[carts]\nreminder_delays_minutes = [30]\n")

    rules = load_rules(path)

    assert rules.loyalty.signup_bonus == 250
    assert rules.carts.reminder_delays_minutes == (30,)
    assert rules.loyalty.tiers == load_rules(None).loyalty.tiers


def test_optional_quiet_hours_and_exchange_rates_are_read():
    rules = parse_rules(
        '[program]\nexchange_rates = { USD = 0.92 }\n\n[triggers.quiet_hours]\nstart = "22:30"\n'
    )

    assert rules.program.exchange_rates == {"USD": 0.92}
    assert (rules.triggers.quiet_hours.start, rules.triggers.quiet_hours.end) == ("22:30", "08:00")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param('[loyalty]\nsignup_bonus = "100"\n', "rules.loyalty.signup_bonus", id="str"),
        pytest.param("[loyalty]\nsignup_bonus = 1.5\n", "rules.loyalty.signup_bonus", id="float"),
        pytest.param("[loyalty]\nsignup_bonus = true\n", "rules.loyalty.signup_bonus", id="bool"),
        pytest.param(
            "[carts]\nmin_value_minor = [100]\n", "rules.carts.min_value_minor", id="list"
        ),
        pytest.param("loyalty = 5\n", "rules.loyalty", id="section-not-a-table"),
        pytest.param(
            '[identity]\nblocked_values = "n/a"\n', "rules.identity.blocked_values", id="not-a-list"
        ),
        pytest.param(
            '[identity]\nblocked_values = ["n/a", 1]\n',
            "rules.identity.blocked_values[1]",
            id="list-item",
        ),
        pytest.param(
            '[program]\nexchange_rates = { USD = "0.9" }\n',
            "rules.program.exchange_rates.USD",
            id="rate-str",
        ),
    ],
)
def test_wrong_type_names_the_key(text, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(text)

    assert error.value.key == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[loyalty]\nsignup_bonsu = 100\n", "rules.loyalty.signup_bonsu"),
        ("[loyality]\nsignup_bonus = 100\n", "rules.loyality"),
        ("[sessions]\ngap_minute = 30\n", "rules.sessions.gap_minute"),
        (
            "[triggers.cooldown_hours]\nabandoned_carts = 16\n",
            "rules.triggers.cooldown_hours.abandoned_carts",
        ),
        (
            "[triggers.rule_versions]\nvip_statuss = 2\n",
            "rules.triggers.rule_versions.vip_statuss",
        ),
        ('[triggers.quiet_hours]\nbegin = "21:00"\n', "rules.triggers.quiet_hours.begin"),
    ],
)
def test_misspelt_key_is_refused_not_ignored(text, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(text)

    assert error.value.key == key


def test_tiers_must_strictly_increase():
    text = MEMBER_SILVER_GOLD + '\n[[loyalty.tiers]]\nname = "gold"\nmin_spend_minor = 35000\n'

    with pytest.raises(ConfigError) as error:
        parse_rules(text)

    assert error.value.key == "rules.loyalty.tiers"
    assert "increase" in error.value.problem


def test_tiers_out_of_order_are_refused():
    text = MEMBER_SILVER_GOLD + '\n[[loyalty.tiers]]\nname = "gold"\nmin_spend_minor = 20000\n'

    with pytest.raises(ConfigError) as error:
        parse_rules(text)

    assert error.value.key == "rules.loyalty.tiers"


def test_first_tier_must_start_at_zero():
    with pytest.raises(ConfigError) as error:
        parse_rules('[[loyalty.tiers]]\nname = "silver"\nmin_spend_minor = 100\n')

    assert error.value.key == "rules.loyalty.tiers"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("min_spend_minor = 100000\n", "rules.loyalty.tiers[2].name"),
        ('name = "gold"\n', "rules.loyalty.tiers[2].min_spend_minor"),
    ],
)
def test_tier_entry_missing_a_required_key_names_it(entry, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(MEMBER_SILVER_GOLD + "\n[[loyalty.tiers]]\n" + entry)

    assert error.value.key == key
    assert "required" in error.value.problem


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "utc+2"])
def test_unknown_time_zone_is_refused(zone):
    with pytest.raises(ConfigError) as error:
        parse_rules(f'[program]\ntimezone = "{zone}"\n')

    assert error.value.key == "rules.program.timezone"


def test_known_time_zone_is_accepted():
    assert parse_rules('[program]\ntimezone = "Europe/Berlin"\n').program.timezone == (
        "Europe/Berlin"
    )


@pytest.mark.parametrize(
    ("start", "end", "key"),
    [
        ("25:00", "08:00", "rules.triggers.quiet_hours.start"),
        ("-1:00", "08:00", "rules.triggers.quiet_hours.start"),
        ("21:00", "8", "rules.triggers.quiet_hours.end"),
        ("21:00", "08:60", "rules.triggers.quiet_hours.end"),
        ("21:00", "8pm", "rules.triggers.quiet_hours.end"),
        ("21:00", "08:00:00", "rules.triggers.quiet_hours.end"),
    ],
)
def test_bad_quiet_hours_name_the_bound(start, end, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(f'[triggers.quiet_hours]\nstart = "{start}"\nend = "{end}"\n')

    assert error.value.key == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[loyalty]\nsignup_bonus = -1\n", "rules.loyalty.signup_bonus"),
        ("[loyalty]\ngrace_days = -30\n", "rules.loyalty.grace_days"),
        ("[loyalty]\nexpiry_days = 0\n", "rules.loyalty.expiry_days"),
        ("[loyalty]\nexpiry_warning_days = 400\n", "rules.loyalty.expiry_warning_days"),
        ("[carts]\nmin_value_minor = -5\n", "rules.carts.min_value_minor"),
        ("[carts]\nreminder_delays_minutes = [1440, 60]\n", "rules.carts.reminder_delays_minutes"),
        ("[carts]\nreminder_delays_minutes = [0, 60]\n", "rules.carts.reminder_delays_minutes"),
        ("[carts]\nreminder_delays_minutes = []\n", "rules.carts.reminder_delays_minutes"),
        ("[triggers]\nfrequency_cap = 0\n", "rules.triggers.frequency_cap"),
        (
            "[triggers.cooldown_hours]\nabandoned_cart = -1\n",
            "rules.triggers.cooldown_hours.abandoned_cart",
        ),
        ("[identity]\nmax_emails = 0\n", "rules.identity.max_emails"),
        ("[sessions]\ngap_minutes = 0\n", "rules.sessions.gap_minutes"),
        ("[program]\nexchange_rates = { USD = -0.9 }\n", "rules.program.exchange_rates.USD"),
        (
            '[[loyalty.tiers]]\nname = "member"\nmin_spend_minor = 0\nmultiplier = -1.0\n',
            "rules.loyalty.tiers[0].multiplier",
        ),
        ("[rfm]\nrecency_days = [30, 60, 90]\n", "rules.rfm.recency_days"),
        ("[rfm]\nfrequency_orders = [1, 2, 3, 6, 10]\n", "rules.rfm.frequency_orders"),
        ("version = 0\n", "rules.version"),
    ],
)
def test_out_of_range_value_names_the_key(text, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(text)

    assert error.value.key == key


def test_non_positive_reward_threshold_is_refused():
    with pytest.raises(ConfigError) as error:
        parse_rules("[loyalty]\nreward_thresholds = [500, -1]\n")

    assert error.value.key.startswith("rules.loyalty.reward_thresholds")


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R"])
def test_currency_must_be_an_iso_code(currency):
    with pytest.raises(ConfigError) as error:
        parse_rules(f'[program]\ncurrency = "{currency}"\n')

    assert error.value.key == "rules.program.currency"


def test_invalid_toml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("version = 1\n[loyalty\nsignup_bonus = 100\n")

    with pytest.raises(ConfigError) as error:
        load_rules(path)

    assert error.value.key == str(path)
    assert "TOML" in error.value.problem
    assert "line 2" in error.value.problem


def test_missing_rules_file_names_the_setting_that_points_at_it(tmp_path):
    path = tmp_path / "no-such-rules.toml"

    with pytest.raises(ConfigError) as error:
        load_rules(path)

    assert error.value.key == "TOUCHSTREAM_RULES"
    assert str(path) in error.value.problem


@pytest.mark.parametrize("path", [None, ""])
def test_no_rules_path_means_the_shipped_defaults(path):
    assert load_rules(path) == parse_rules(default_rules_text())


def test_config_error_message_starts_with_the_key():
    with pytest.raises(ConfigError) as error:
        load_rules(Path("/definitely/not/here.toml"))

    assert str(error.value).startswith("TOUCHSTREAM_RULES: ")


CAMPAIGN = '[[loyalty.campaigns]]\nname = "shoes"\nmultiplier = 2.0\ncategory = "shoes"\n'


def test_a_campaign_runs_between_its_dates():
    rules = parse_rules(
        CAMPAIGN + 'starts_at = "2026-11-27T00:00:00Z"\nends_at = "2026-11-30T23:59:59+00:00"\n'
    )

    (campaign,) = rules.loyalty.campaigns
    assert campaign.per_mille == 2000
    assert not campaign.active(1_795_737_599_999)  # 2026-11-26T23:59:59.999Z
    assert campaign.active(1_795_737_600_000) and campaign.active(1_796_083_199_000)
    assert not campaign.active(1_796_083_199_001)


@pytest.mark.parametrize(
    ("dates", "key"),
    [
        ('starts_at = "27 Nov 2026"\n', "rules.loyalty.campaigns[0].starts_at"),
        ('ends_at = "2026-11-30T23:59:59"\n', "rules.loyalty.campaigns[0].ends_at"),  # no offset
        (
            'starts_at = "2026-12-01T00:00:00Z"\nends_at = "2026-11-30T00:00:00Z"\n',
            "rules.loyalty.campaigns[0].ends_at",
        ),
    ],
)
def test_a_campaign_with_bad_dates_stops_start_up_naming_the_key(dates, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(CAMPAIGN + dates)

    assert error.value.key == key


# --- exchange rates: per major unit, never a silent change of meaning ------------------------


def test_rates_per_major_unit_are_read():
    rules = parse_rules("[program]\nexchange_rates_per_major = { JPY = 0.0061, KWD = 2.98 }\n")

    assert rules.program.exchange_rates_per_major == {"JPY": 0.0061, "KWD": 2.98}


@pytest.mark.parametrize(
    ("code", "ratio", "per_major"), [("JPY", 0.61, "0.0061"), ("KWD", 298, "2980")]
)
def test_the_old_key_is_refused_for_a_currency_of_another_exponent_saying_how_to_convert(
    code, ratio, per_major
):
    # exchange_rates applied its number to minor units: for JPY or KWD against EUR the same
    # number read per major unit would be 100 or 10 times off, so it is refused, not reread
    with pytest.raises(ConfigError) as error:
        parse_rules(f"[program]\nexchange_rates = {{ {code} = {ratio} }}\n")

    assert error.value.key == f"rules.program.exchange_rates.{code}"
    assert "exchange_rates_per_major" in error.value.problem
    assert f"write {code} = {per_major}" in error.value.problem


def test_the_old_key_keeps_its_meaning_between_currencies_of_one_exponent():
    old = parse_rules("[program]\nexchange_rates = { USD = 0.92 }\n").program
    new = parse_rules("[program]\nexchange_rates_per_major = { USD = 0.92 }\n").program

    assert old.minor_rates() == new.minor_rates()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            "[program]\nexchange_rates_per_major = { XAU = 1800.0 }\n",
            "exchange_rates_per_major.XAU",
        ),
        ("[program]\nexchange_rates_per_major = { ABC = 1.0 }\n", "exchange_rates_per_major.ABC"),
        (
            "[program]\nexchange_rates = { USD = 0.9 }\nexchange_rates_per_major = { USD = 0.9 }\n",
            "exchange_rates.USD",
        ),
    ],
    ids=["no-minor-unit", "not-iso-4217", "in-both-keys"],
)
def test_a_rate_whose_exponent_is_unknown_or_doubled_is_refused(text, key):
    with pytest.raises(ConfigError) as error:
        parse_rules(text)

    assert error.value.key == f"rules.program.{key}"


def test_a_program_currency_with_the_wrong_decimals_is_refused_naming_the_right_ones():
    with pytest.raises(ConfigError) as error:
        parse_rules('[program]\ncurrency = "JPY"\n')

    assert error.value.key == "rules.program.currency_decimals"
    assert "currency_decimals = 0" in error.value.problem


def test_a_campaign_multiplier_above_the_bound_is_refused():
    # at 20x the largest order the contract admits is 2 * 10**19 thousandths: more than the
    # state codec can write, so one such purchase would stop its customer's partition
    text = '[[loyalty.campaigns]]\nname = "x"\nmultiplier = {}\n'
    parse_rules(text.format(10.0))

    with pytest.raises(ConfigError) as error:
        parse_rules(text.format(20.0))

    assert error.value.key == "rules.loyalty.campaigns[0].multiplier"
    assert "at most 10" in error.value.problem
