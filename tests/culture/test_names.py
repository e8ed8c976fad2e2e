"""Names: Latin script, the culture's order, deterministic for a seed, never repeated."""

import pytest

from emotional_engine.culture import NameGenerator, is_latin_name, known_names, load_profile, profile_tags

TAGS = profile_tags()


@pytest.mark.parametrize("tag", TAGS)
def test_fifty_names_are_latin_distinct_and_seeded(tag):
    people = NameGenerator(tag, seed=7).people(50)
    fulls = [p.full for p in people]
    assert len(set(fulls)) == 50
    for p in people:
        assert is_latin_name(p.full), (tag, p.full)
        assert p.given and p.family and p.given in p.full and p.family in p.full
    assert [p.full for p in NameGenerator(tag, seed=7).people(50)] == fulls
    assert [p.full for p in NameGenerator(tag, seed=8).people(50)] != fulls


@pytest.mark.parametrize("tag", TAGS)
def test_gender_is_honoured(tag):
    gen = NameGenerator(tag, seed=1)
    assert all(p.gender == "female" for p in gen.people(10, "female"))
    assert all(p.gender == "male" for p in gen.people(10, "male"))


@pytest.mark.parametrize("tag", ["ja-JP", "ko-KR", "zh-CN", "vi-VN"])
def test_east_asian_names_put_the_family_name_first(tag):
    for p in NameGenerator(tag, seed=3).people(20):
        assert p.full.startswith(p.family + " ") and p.full.endswith(" " + p.given), p


def test_english_names_put_the_given_name_first():
    for p in NameGenerator("en-US", seed=3).people(20):
        assert p.full.startswith(p.given + " ") and p.full.endswith(" " + p.family), p


def test_vietnamese_middle_names_follow_gender():
    for p in NameGenerator("vi-VN", seed=2).people(20, "female"):
        assert p.middle in load_profile("vi-VN").names.middle_female


def test_russian_surnames_take_the_gendered_form():
    prof = load_profile("ru-RU")
    assert all(p.family in prof.names.family_female for p in NameGenerator(prof, 4).people(15, "female"))
    assert all(p.family in prof.names.family_male for p in NameGenerator(prof, 4).people(15, "male"))


def test_swahili_names_are_not_yoruba():
    from faker.providers.person.yo_NG import Provider as Yoruba

    yoruba = {
        n.casefold()
        for attr in ("first_names", "first_names_female", "first_names_male")
        for n in getattr(Yoruba, attr, ())
    }
    assert yoruba  # the list we compare with is really there
    for p in NameGenerator("sw-KE", seed=11).people(200):
        assert p.given.casefold() not in yoruba, p


def test_is_latin_name():
    assert is_latin_name("Łucja Wiśniewska") and is_latin_name("Nguyễn Thị Lan") and is_latin_name("O'Brien")
    assert is_latin_name("Ōtaki Hēmi") and is_latin_name("Şule Çelik")
    assert not is_latin_name("田中") and not is_latin_name("Вера") and not is_latin_name("") and not is_latin_name("A1")


def test_bad_gender_is_refused():
    with pytest.raises(ValueError):
        NameGenerator("en-US").person("other")


@pytest.mark.parametrize("tag", ["ja-JP", "ko-KR", "en-US", "sw-KE", "vi-VN", "am-ET", "pl-PL"])
def test_known_names_cover_what_the_generator_makes(tag):
    known = known_names(tag)
    assert all(is_latin_name(n) for part in known.values() for n in part)
    for p in NameGenerator(tag, seed=5).people(40):
        assert p.given in known["given"], p
        assert p.family in known["family"], p
        assert not p.middle or p.middle in known["middle"], p


def test_known_names_leave_out_excluded_ones():
    assert "Wanjiru" not in known_names("sw-KE")["given"]
    assert "Costela" not in known_names("pt-BR")["family"]
