"""The synthetic demo members: deterministic, unique where it matters, and well-formed."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import date

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.demo_data import (
    CHANNELS,
    CONSENT_PURPOSES,
    EMAIL_DOMAINS,
    GENDERS,
    GIVEN_NAME_CHARACTERS,
    MAX_MEMBERS,
    PHONE_PREFIXES,
    PLACES,
    PROVINCES,
    SURNAMES,
    TIERS,
    ConsentPlan,
    generate_members,
    plan_consents,
)

REQUIRED_KEYS = {
    "name",
    "phone",
    "birthday",
    "gender",
    "address",
    "id_number",
    "tier",
    "points_balance",
    "registered_at",
    "channel",
    "home_store",
}
BIG = 20_000

# Written out here, independently of vault.fields, so the test also checks that module.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _check_char(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


@pytest.fixture(scope="module")
def members() -> list[dict[str, object]]:
    return list(generate_members(BIG))


@pytest.fixture(scope="module")
def district_codes() -> dict[str, str]:
    """Address prefix (province + city + district) -> GB/T 2260 code."""
    return {p.province + p.city + d: code for p in PLACES for d, code in p.districts}


def test_same_seed_yields_identical_members() -> None:
    assert list(generate_members(300, seed=7)) == list(generate_members(300, seed=7))


def test_different_seeds_yield_different_members() -> None:
    assert list(generate_members(50, seed=1)) != list(generate_members(50, seed=2))


def test_short_run_is_prefix_of_longer_run() -> None:
    assert list(generate_members(40)) == list(generate_members(500))[:40]


def test_generates_exactly_n_members() -> None:
    assert sum(1 for _ in generate_members(1234)) == 1234
    assert list(generate_members(0)) == []


@pytest.mark.parametrize("n", [-1, MAX_MEMBERS + 1])
def test_out_of_range_n_is_rejected_at_call_time(n: int) -> None:
    with pytest.raises(ValueError):
        generate_members(n)


def test_members_have_exactly_the_documented_keys(members: list[dict[str, object]]) -> None:
    for m in members:
        assert set(m) in (REQUIRED_KEYS, REQUIRED_KEYS | {"email"})


def test_phones_are_valid_cn_mobiles_with_known_prefixes(members: list[dict[str, object]]) -> None:
    for m in members:
        phone = m["phone"]
        assert isinstance(phone, str) and re.fullmatch(r"1\d{10}", phone)
        assert phone[:3] in PHONE_PREFIXES
        number = phonenumbers.parse(phone, "CN")
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


def test_phones_are_unique(members: list[dict[str, object]]) -> None:
    phones = [m["phone"] for m in members]
    assert len(set(phones)) == len(phones)
    # Unique by construction, not by luck: the last 8 digits alone never repeat.
    assert len({str(p)[3:] for p in phones}) == len(phones)


def test_emails_are_unique_lowercase_and_well_formed(members: list[dict[str, object]]) -> None:
    emails = [m["email"] for m in members if "email" in m]
    assert len(set(emails)) == len(emails)
    for email in emails:
        assert isinstance(email, str) and email == email.lower()
        local, _, domain = email.partition("@")
        assert re.fullmatch(r"[a-z0-9._]+", local) and domain in EMAIL_DOMAINS


def test_about_70_percent_of_members_have_an_email(members: list[dict[str, object]]) -> None:
    share = sum("email" in m for m in members) / len(members)
    assert 0.67 <= share <= 0.73


def test_email_tokens_stay_unique_past_the_first_band() -> None:
    # Indexes 90,000 onwards use longer tokens from a second permutation.
    from cli.demo_data import _EmailTokens

    tokens = _EmailTokens(5)
    seen = {tokens(i) for i in range(85_000, 100_000)}
    assert len(seen) == 15_000


def test_id_numbers_have_a_valid_check_character(members: list[dict[str, object]]) -> None:
    for m in members:
        id_number = str(m["id_number"])
        assert re.fullmatch(r"[1-9]\d{16}[\dX]", id_number)
        assert id_number[17] == _check_char(id_number[:17])


def test_id_numbers_embed_the_birthday(members: list[dict[str, object]]) -> None:
    for m in members:
        assert str(m["id_number"])[6:14] == str(m["birthday"]).replace("-", "")


def test_id_sequence_parity_matches_gender(members: list[dict[str, object]]) -> None:
    for m in members:
        digit = int(str(m["id_number"])[16])
        if m["gender"] == "男":
            assert digit % 2 == 1
        elif m["gender"] == "女":
            assert digit % 2 == 0


def test_id_region_code_is_the_address_district(
    members: list[dict[str, object]], district_codes: dict[str, str]
) -> None:
    for m in members:
        address = str(m["address"])
        prefix = next(p for p in district_codes if address.startswith(p))
        assert str(m["id_number"])[:6] == district_codes[prefix]


def test_id_numbers_are_unique(members: list[dict[str, object]]) -> None:
    ids = [m["id_number"] for m in members]
    assert len(set(ids)) == len(ids)


def test_addresses_start_with_a_table_province_and_match_the_shape(
    members: list[dict[str, object]],
) -> None:
    provinces = "|".join(sorted(PROVINCES, key=len, reverse=True))
    shape = re.compile(
        rf"({provinces})([\u4e00-\u9fff]+市)?[\u4e00-\u9fff]+区"
        r"[\u4e00-\u9fff]+(路|街|大道)[1-9]\d*号"
    )
    for m in members:
        address = str(m["address"])
        assert shape.fullmatch(address), address
        assert not re.search(r"[;'\"]", address)


def test_provinces_end_in_sheng_or_zizhiqu_and_cities_in_shi() -> None:
    assert len({p.province for p in PLACES if p.city}) >= 20
    for p in PLACES:
        if p.city:
            assert p.province.endswith(("省", "自治区")) and p.city.endswith("市")
        else:
            assert p.province in {"北京市", "上海市", "天津市", "重庆市"}
    per_province = Counter(p.province for p in PLACES if p.city)
    assert all(2 <= count <= 4 for count in per_province.values())


def test_each_store_code_names_one_city() -> None:
    codes = [p.store_code for p in PLACES]
    assert len(set(codes)) == len(codes)


def test_home_store_belongs_to_the_members_city(members: list[dict[str, object]]) -> None:
    code_of = {p.province + p.city: p.store_code for p in PLACES}
    for m in members:
        store = str(m["home_store"])
        assert re.fullmatch(r"[A-Z]{2}-\d{3}", store)
        city = next(c for c in code_of if str(m["address"]).startswith(c))
        assert store[:2] == code_of[city]


def test_names_are_a_table_surname_and_one_or_two_given_characters(
    members: list[dict[str, object]],
) -> None:
    assert len(SURNAMES) >= 60 and {"欧阳", "司马", "上官", "诸葛"} <= set(SURNAMES)
    assert len(GIVEN_NAME_CHARACTERS) >= 150
    for m in members:
        name = str(m["name"])
        surname = name[:2] if name[:2] in SURNAMES else name[:1]
        assert surname in SURNAMES
        given = name[len(surname) :]
        assert 1 <= len(given) <= 2 and set(given) <= GIVEN_NAME_CHARACTERS


def test_common_surnames_are_drawn_most_often(members: list[dict[str, object]]) -> None:
    counts = Counter(str(m["name"])[0] for m in members)
    top = {s for s, _ in counts.most_common(5)}
    assert len(top & {"王", "李", "张", "刘", "陈"}) >= 4


def test_birthdays_fall_between_1950_and_2007(members: list[dict[str, object]]) -> None:
    for m in members:
        born = date.fromisoformat(str(m["birthday"]))
        assert date(1950, 1, 1) <= born <= date(2007, 12, 31)


def test_registration_is_in_window_and_not_before_sixteenth_birthday(
    members: list[dict[str, object]],
) -> None:
    for m in members:
        registered = date.fromisoformat(str(m["registered_at"]))
        born = date.fromisoformat(str(m["birthday"]))
        assert date(2015, 1, 1) <= registered <= date(2026, 11, 1)
        assert (registered.year - born.year, registered.month, registered.day) >= (
            16,
            born.month,
            born.day,
        )


def test_enumerations_use_only_allowed_values(members: list[dict[str, object]]) -> None:
    assert {m["gender"] for m in members} == set(GENDERS)
    assert {m["tier"] for m in members} == set(TIERS)
    assert {m["channel"] for m in members} == set(CHANNELS)
    unknown = sum(m["gender"] == "未知" for m in members) / len(members)
    assert unknown < 0.05


def test_tier_distribution_is_within_3_points_of_the_pyramid(
    members: list[dict[str, object]],
) -> None:
    counts = Counter(m["tier"] for m in members)
    for tier, target in zip(TIERS, (0.60, 0.25, 0.12, 0.03), strict=True):
        assert abs(counts[tier] / len(members) - target) < 0.03


def test_points_are_non_negative_and_rise_with_tier(members: list[dict[str, object]]) -> None:
    by_tier: dict[object, list[int]] = {t: [] for t in TIERS}
    for m in members:
        points = m["points_balance"]
        assert isinstance(points, int) and points >= 0
        by_tier[m["tier"]].append(points)
    medians = [sorted(v)[len(v) // 2] for v in by_tier.values()]
    assert medians == sorted(medians) and len(set(medians)) == 4


def test_members_pass_the_vaults_field_validation() -> None:
    from vault import fields

    for m in generate_members(500, seed=11):
        assert fields.normalise_phone(m["phone"]) == f"+86{m['phone']}"
        if "email" in m:
            assert fields.normalise_email(m["email"]) == m["email"]
        assert fields.normalise_resident_id(m["id_number"]) == m["id_number"]
        assert fields.normalise_value("address", m["address"], field="address") == m["address"]
        assert fields.normalise_value("name", m["name"], field="name") == m["name"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**64))
def test_any_seed_gives_valid_phones_and_ids(seed: int) -> None:
    batch = list(generate_members(60, seed=seed))
    assert len({m["phone"] for m in batch}) == 60
    for m in batch:
        assert phonenumbers.is_valid_number(phonenumbers.parse(str(m["phone"]), "CN"))
        id_number = str(m["id_number"])
        assert id_number[17] == _check_char(id_number[:17])


def test_consent_plans_name_only_known_purposes_statuses_and_channels(
    members: list[dict[str, object]],
) -> None:
    rng = random.Random(3)
    for m in members[:5000]:
        plans = plan_consents(m, rng)
        assert all(isinstance(p, ConsentPlan) for p in plans)
        purposes = [p.purpose for p in plans]
        assert len(set(purposes)) == len(purposes) and set(purposes) <= set(CONSENT_PURPOSES)
        for p in plans:
            assert p.status in {"granted", "refused", "withdrawn"} and p.channel in CHANNELS


def test_consent_purposes_are_the_consent_based_ones() -> None:
    assert set(CONSENT_PURPOSES) == {
        "marketing_sms",
        "marketing_email",
        "birthday_benefits",
        "personalization",
        "analytics",
        "partner_sharing",
        "identity_verification",
    }


def test_marketing_email_is_never_planned_without_an_email(
    members: list[dict[str, object]],
) -> None:
    rng = random.Random(4)
    without = [m for m in members if "email" not in m]
    assert without
    for m in without:
        assert all(p.purpose != "marketing_email" for p in plan_consents(m, rng))


def test_consent_rates_are_near_their_targets(members: list[dict[str, object]]) -> None:
    rng = random.Random(5)
    status: Counter[tuple[str, str]] = Counter()
    same_channel = total = 0
    for m in members:
        for p in plan_consents(m, rng):
            status[p.purpose, p.status] += 1
            same_channel += p.channel == m["channel"]
            total += 1
    n = len(members)
    assert abs(status["marketing_sms", "granted"] / n - 0.55) < 0.03
    assert abs(status["marketing_sms", "withdrawn"] / n - 0.08) < 0.02
    assert status["marketing_sms", "refused"] > 0
    assert abs(status["birthday_benefits", "granted"] / n - 0.65) < 0.03
    assert abs(status["partner_sharing", "granted"] / n - 0.08) < 0.02
    assert abs(status["identity_verification", "granted"] / n - 0.05) < 0.02
    with_email = sum("email" in m for m in members)
    assert abs(status["marketing_email", "granted"] / with_email - 0.40) < 0.03
    assert same_channel / total > 0.8


def test_consent_plans_are_deterministic_for_an_rng_seed(
    members: list[dict[str, object]],
) -> None:
    first = [plan_consents(m, random.Random(9)) for m in members[:200]]
    again = [plan_consents(m, random.Random(9)) for m in members[:200]]
    assert first == again
