"""Presentation patterns and reaction-time masking against hand-built cases."""

import warnings

import pytest

from trainables.config import TemporalConfig
from trainables.settings import SettingError
from trainables.temporal import MaskedChunkWarning, chunks, label_mask, reaction_steps, stretch


def _mask_and_warnings(pattern, **times):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = label_mask(pattern, **times)
    return mask, [w for w in caught if issubclass(w.category, MaskedChunkWarning)]


def test_the_seeds_example_masks_every_step_with_a_warning_per_chunk():
    # "1000111000", dt 2, reaction time 6: ceil(6/2) = 3 steps per chunk; chunk 1 is step 0 only,
    # chunk 2 steps 4-6 (three steps): both wholly masked, and the null steps are masked anyway.
    mask, caught = _mask_and_warnings("1000111000", dt=2, reaction_time=6)
    assert mask == [False] * 10
    assert len(caught) == 2
    assert "steps 0-0" in str(caught[0].message) and "steps 4-6" in str(caught[1].message)


def test_all_ones_with_one_reaction_step_masks_only_the_first():
    mask, caught = _mask_and_warnings("1111", dt=1, reaction_time=1)
    assert mask == [False, True, True, True] and caught == []


@pytest.mark.parametrize(
    ("pattern", "dt", "reaction_time", "expected"),
    [
        ("1011", 1, 0, [True, False, True, True]),            # null steps only
        ("1011", 1, 1, [False, False, False, True]),          # chunk "1" masked wholly, "11" keeps one
        ("10001000", 1.0, 0.5, [False] * 8),                  # ceil(0.5) = 1 step: each 1-step chunk
        ("11101110", 0.3, 0.9, [False] * 8),                  # 0.9 / 0.3 = 3.0000000000000004: 3 steps
        ("11110111", 0.3, 0.6, [False, False, True, True, False, False, False, True]),
    ],
)
def test_masks_of_hand_built_cases(pattern, dt, reaction_time, expected):
    assert _mask_and_warnings(pattern, dt=dt, reaction_time=reaction_time)[0] == expected


def test_a_warning_names_only_the_wholly_masked_chunks():
    _, caught = _mask_and_warnings("1011", dt=1, reaction_time=1)
    assert [str(w.message).split(" of ")[0] for w in caught] == ["stimulus chunk at steps 0-0"]


def test_chunks_and_reaction_steps():
    assert chunks("0110111001") == [(1, 2), (4, 3), (9, 1)]
    assert reaction_steps(dt=2, reaction_time=6) == 3
    assert reaction_steps(dt=2, reaction_time=5) == 3
    assert reaction_steps(dt=2, reaction_time=0) == 0
    assert reaction_steps(dt=0.1, reaction_time=0.3) == 3


def test_stretching_holds_each_character_equally_long():
    assert stretch("10", 4) == "1100"
    assert stretch("1011", 8) == "11001111"
    assert stretch("1011", 4) == "1011"
    with pytest.raises(ValueError, match="positive multiple of the pattern's length 3"):
        stretch("101", 4)


@pytest.mark.parametrize("pattern", ["0000", "", "1021", "1 1", 1011])
def test_patterns_without_a_stimulus_or_with_other_characters_are_refused(pattern):
    with pytest.raises(ValueError, match="pattern must"):
        label_mask(pattern, dt=1, reaction_time=0)


@pytest.mark.parametrize(("dt", "reaction_time"), [(0, 1), (-1, 1), (1, -0.5), (float("nan"), 1)])
def test_bad_times_are_refused(dt, reaction_time):
    with pytest.raises(ValueError, match="must be a finite number"):
        label_mask("11", dt=dt, reaction_time=reaction_time)


@pytest.mark.parametrize(
    ("fields", "key", "rule"),
    [
        ({"pattern": "0"}, "temporal.pattern", "with at least one 1"),
        ({"pattern": "1x"}, "temporal.pattern", "a string of 0 and 1"),
        ({"n_timesteps": 6, "pattern": "1011"}, "temporal.pattern", "divides temporal.n_timesteps (6)"),
        ({"n_timesteps": 4, "pattern": "1010", "reaction_time": 1.0}, "temporal.reaction_time", "leaves a step"),
        ({"dt": 0.0}, "temporal.dt", "a number > 0"),
        ({"reaction_time": -1.0}, "temporal.reaction_time", "a number >= 0"),
        ({"n_timesteps": 0}, "temporal.n_timesteps", "an integer in [1, 1024]"),
    ],
)
def test_the_temporal_section_refuses_with_the_key_the_rule_and_the_value(fields, key, rule):
    with pytest.raises(SettingError) as caught:
        TemporalConfig(**fields)
    assert caught.value.key == key and rule in caught.value.rule


def test_the_section_gives_the_stretched_steps_and_their_mask():
    section = TemporalConfig(n_timesteps=8, pattern="1011", dt=2.0, reaction_time=2.0)
    assert section.steps == "11001111"
    assert section.supervised() == [False, True, False, False, False, True, True, True]
    assert TemporalConfig().is_static and not section.is_static
