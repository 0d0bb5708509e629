"""A seeded search samples the same trials as before the trial schema (commit 128055d).

``fixtures/sampled_before_schema.json`` holds, per shipped space, 12 trials drawn by the driver's
TPE sampler (seeded; 4 random start-up trials, then multivariate TPE) and 12 by the random sampler,
written by the code before the schema redesign. The same draw now must give the same flat configs,
but for the one documented rename: a model kind's parameters are namespaced by the kind
(``model.hidden`` is now ``model.<kind>.hidden``), and one changed default: ``train.amp`` was a
bool with default false and is now ``off | fp16 | bf16 | auto`` with default ``auto`` (issue 14).
The shipped spaces leave it at its default, so their constant changed from false to auto; it is
no searched dimension and the score below ignores strings and bools, so the draws are unchanged.
Issue 15 added the ``temporal`` section and issue 16 the ``weighting`` and ``auxiliary`` ones: a
space without them has their defaults as constants (one step showing the image; fixed weights; no
auxiliary loss), which the score
leaves out, so the draws are unchanged; and
``spaces/temporal_energy.yaml`` became a temporal space with other dimensions, so its draws from
before are dropped from the fixture.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml

from search.space import load_space

REPO = Path(__file__).resolve().parents[2]
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "sampled_before_schema.json").read_text())


# The defaults of the sections added since: constants of every space that does not set them.
NEW_DEFAULTS = {"temporal.n_timesteps": 1, "temporal.pattern": "1", "temporal.dt": 1.0,
                "temporal.reaction_time": 0.0, "weighting.strategy": "fixed", "auxiliary.kind": "none"}


def _score(config: dict) -> float:
    numbers = [v for k, v in config.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NEW_DEFAULTS]
    return sum(float(v) for v in numbers if math.isfinite(v)) % 7.0


def _renamed(config: dict, *, amp_default: bool) -> dict:
    """An old flat config under today's key names, data paths relative to the repository;
    ``amp_default``: the space leaves train.amp at its default (false then, auto now)."""
    out = {}
    for key, value in config.items():
        if key.startswith("model.") and key != "model.kind" and key.count(".") == 1:
            key = f"model.{config['model.kind']}.{key.split('.')[1]}"
        if key == "train.amp" and amp_default:
            assert value is False, "the old default of train.amp was false"
            value = "auto"
        out[key] = value
    return {**out, **NEW_DEFAULTS}


def _sampler(name: str) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=0)
    return optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, constant_liar=True, n_startup_trials=4)


@pytest.mark.parametrize("case", sorted(BEFORE))
def test_seeded_sampling_gives_the_same_trials_as_before(case: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    path, sampler = case.split(":")
    space = load_space(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=_sampler(sampler))
    now = []
    for _ in BEFORE[case]:
        trial = study.ask()
        constants = space.define_by_run(trial)
        config = {**trial.params, **constants}
        study.tell(trial, _score(config))
        if isinstance(config.get("data.path"), str):
            config["data.path"] = str(Path(config["data.path"]).relative_to(REPO))
        now.append(config)
    amp_default = "amp" not in (yaml.safe_load((REPO / path).read_text()).get("train") or {})
    expected = [_renamed(c, amp_default=amp_default) for c in BEFORE[case]]
    assert len(now) == len(expected)
    for index, (got, want) in enumerate(zip(now, expected)):
        assert got.keys() == want.keys(), index
        differ = {k: (got[k], want[k]) for k in got if not _same_value(got[k], want[k])}
        assert not differ, f"trial {index}: {differ}"


def _same_value(a: object, b: object) -> bool:
    """Equal, floats to 1e-12 relative: TPE's draws go through NumPy, whose last bit differs
    between versions and CPUs (SIMD paths); a changed draw differs far above that."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return type(a) is type(b) and a == b
