"""ASHA with promotions (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning").

Ray's ``AsyncHyperBandScheduler`` decides once, when a trial reaches a rung: it stops the trial if
it ranks below the rung's cutoff and lets every other trial run on. With one or two trials at a
time, the first trials of a search meet empty rungs and all run to the end.

The paper's ASHA pauses every trial at each rung instead. A worker that comes free (its trial
paused, finished or failed) resumes the best paused trial that ranks in the top 1/rf of its rung,
highest rung first, and otherwise starts a new configuration. A trial therefore trains past a
rung only once rf trials have reached that rung and it is among the best of them (``rung_top``:
trials tied with the last of the top 1/rf rank with it).

In Tune, a trial that reaches a rung is paused (Tune keeps its last checkpoint) unless a trial
may be promoted; the best such trial runs on. If it is another trial, that paused trial takes the
slot of the one that pauses (or of one that finishes or fails). Otherwise the slot goes to a new
configuration: ``PausingLimiter`` frees the slot of a paused trial. When no new configuration
will come and nothing runs or waits, the best trial waiting at the highest rung runs on if no
trial ran on from that rung (a small search would otherwise train none to its last epoch); then
the paused trials that were not promoted end as stopped early.

Tune saves the searcher's state and its callbacks' with its experiment state, not the scheduler's:
``PromotionState``, a callback, saves the rungs, so a search resumed after a crash keeps its
paused trials paused (Tune would restart them all) and ranks them where they were.
"""

from __future__ import annotations

import copy
import math
from typing import Any, TypeVar

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter

from search.driver._trainable import FINAL_KEY
from search.ranking import same_value
from trainables.metric_names import LAST_EPOCH_KEY

__all__ = ["PausingLimiter", "PromotingAsha", "PromotionState", "rung_score", "rung_top"]

Key = TypeVar("Key")


def rung_score(value: float, *, sign: float) -> float:
    """``value`` as a rung ranks it, higher first: times ``sign`` (1 to maximise, -1 to minimise);
    a diverged trial's (NaN, inf) last."""
    score = sign * value
    return score if math.isfinite(score) else -math.inf


def rung_top(scores: dict[Key, float], *, reduction_factor: float) -> list[Key]:
    """The trials a rung may promote, best first: the top 1/``reduction_factor`` of ``scores``
    (higher is better; equal scores in the order they came) and every trial tied with the last of
    them.

    A tie is a rank the rung cannot tell apart, so its cutoff does not split one. Classifiers
    still at chance level after a rung's epochs tie exactly (the temporal space: 10 to 15 of 30
    configurations at 0.15 after epoch 1), and which of them trains on would otherwise depend
    only on which came first. Scores equal but for float rounding tie too (a mean of per-head
    accuracies: 29/45, 11/45, 9/45 and 27/45, 13/45, 9/45 are both 49/135, one ulp apart). A
    trial that diverged (-inf) is never among them."""
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    count = int(len(ranked) / reduction_factor + 1e-9)  # 33 / 1.1 is 29.999999999999996 in floats
    if 0 < count < len(ranked) and math.isfinite(cutoff := scores[ranked[count - 1]]):
        while count < len(ranked) and same_value(scores[ranked[count]], cutoff):
            count += 1
    return [key for key in ranked[:count] if math.isfinite(scores[key])]


class PausingLimiter(ConcurrencyLimiter):
    """A ``ConcurrencyLimiter`` that frees the slot of a paused trial (``on_pause``) and takes it
    back when the trial resumes (``on_unpause``), so a new configuration may start meanwhile."""

    def __init__(self, searcher: Any, max_concurrent: int) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.paused: set[str] = set()

    def on_pause(self, trial_id: str) -> None:
        if trial_id in self.live_trials:
            self.live_trials.remove(trial_id)
            self.num_unfinished_live_trials -= 1
            self.paused.add(trial_id)
        self.searcher.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        if trial_id in self.paused:
            self.paused.remove(trial_id)
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        self.searcher.on_unpause(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.paused:  # stopped while paused: the searcher still learns how it ended
            self.paused.remove(trial_id)
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


class PromotingAsha(FIFOScheduler):
    """ASHA with promotions on ``metric`` (``mode``) with the epoch as time: rungs at
    ``milestones`` (``search.driver._rungs``), promotion to a rung for the top 1/``reduction_factor``
    of the one below. Trials run to ``epochs``; the last rung's trials are not paused again."""

    def __init__(self, *, metric: str, mode: str, milestones: list[int], reduction_factor: float) -> None:
        super().__init__()
        self._metric = metric
        self.sign = 1.0 if mode == "max" else -1.0
        self.milestones = milestones
        self.reduction_factor = reduction_factor
        self.scores: list[dict[str, float]] = [{} for _ in milestones]  # per rung: trial -> signed value
        self.promoted: list[set[str]] = [set() for _ in milestones]
        self.ended: set[str] = set()  # failed or removed: still counted at their rungs, never promoted
        self.resume: list[str] = []  # promoted paused trials, next to run

    # what PromotionState saves and restores
    _STATE = ("scores", "promoted", "ended", "resume")

    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy({name: getattr(self, name) for name in self._STATE})

    def set_state(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, copy.deepcopy(state[name]))

    def _paused_at_rung(self, trial_id: str) -> bool:
        """Whether the trial reached a rung and waits there: not promoted from it, not ended."""
        for rung in reversed(range(len(self.milestones))):
            if trial_id in self.scores[rung]:
                return trial_id not in self.promoted[rung] and trial_id not in self.ended
        return False

    def _promotable(self) -> tuple[int, str] | None:
        """(rung, trial) of the best trial not yet promoted in the top of the highest rung that has
        one (``rung_top``)."""
        for rung in reversed(range(len(self.milestones))):
            for trial_id in rung_top(self.scores[rung], reduction_factor=self.reduction_factor):
                if trial_id not in self.promoted[rung] and trial_id not in self.ended:
                    return rung, trial_id
        return None

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if result.get(FINAL_KEY):
            return TrialScheduler.CONTINUE
        if trial.trial_id in self.resume:  # promoted while paused: running again
            self.resume.remove(trial.trial_id)
        epoch = result.get("epoch")
        if epoch not in self.milestones or self._metric not in result:
            return TrialScheduler.CONTINUE
        rung = self.milestones.index(epoch)
        if trial.trial_id in self.scores[rung]:  # reached again: a retry from this rung's checkpoint
            return TrialScheduler.CONTINUE
        self.scores[rung][trial.trial_id] = rung_score(result[self._metric], sign=self.sign)
        if result.get(LAST_EPOCH_KEY):  # its own patience ends it here: it ranks at the rung and finishes
            self.promoted[rung].add(trial.trial_id)
            return TrialScheduler.CONTINUE
        best = self._promotable()
        if best is not None and best[1] == trial.trial_id:
            self.promoted[best[0]].add(trial.trial_id)
            return TrialScheduler.CONTINUE
        if best is not None:  # a paused trial runs on in this trial's slot
            self._resume(tune_controller, *best)
        return self._pause(tune_controller, trial)

    def _resume(self, tune_controller: Any, rung: int, trial_id: str) -> None:
        self.promoted[rung].add(trial_id)
        self.resume.append(trial_id)
        tune_controller.search_alg.searcher.on_unpause(trial_id)

    def _pause(self, tune_controller: Any, trial: Trial) -> str:
        tune_controller.search_alg.searcher.on_pause(trial.trial_id)
        return TrialScheduler.PAUSE

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING and self._paused_at_rung(trial.trial_id):
                _pause_restored(tune_controller, trial)
        by_id = {trial.trial_id: trial for trial in trials}
        for trial_id in self.resume:
            if by_id[trial_id].status in (Trial.PAUSED, Trial.PENDING):
                return by_id[trial_id]
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        finished = tune_controller.search_alg.is_finished()
        if finished and _has_free_slot(tune_controller.search_alg.searcher):
            # No configuration will come to take the slot: a trial that ranks runs on in it now.
            # (During the search a slot that comes free goes to one, as a trial ends or pauses;
            # a rung that made several tied trials promotable at once resumed only one of them.)
            best = self._promotable()
            if best is not None:
                self._resume(tune_controller, *best)
                return by_id[best[1]]
        live = any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials)
        if not live and finished:
            last = self._last_promotion()
            if last is not None:
                self._resume(tune_controller, *last)
                return by_id[last[1]]
            # nothing left to rank a paused trial against: each ends where it paused
            for trial in trials:
                if trial.status == Trial.PAUSED:
                    _stop_paused(tune_controller, trial)
        return None

    def _last_promotion(self) -> tuple[int, str] | None:
        """(rung, trial) of the best trial waiting at the highest rung where trials wait, if no trial
        ran on from that rung: when no configuration will come and nothing runs. A search with
        fewer than ``reduction_factor`` trials at its highest rung would otherwise end without
        any trial trained to its last epoch (nor tested)."""
        for rung in reversed(range(len(self.milestones))):
            waiting = {trial_id: score for trial_id, score in self.scores[rung].items()
                       if trial_id not in self.promoted[rung] and trial_id not in self.ended}
            if not waiting:
                continue
            if self.promoted[rung]:
                return None
            best = max(waiting, key=waiting.__getitem__)
            return (rung, best) if math.isfinite(waiting[best]) else None
        return None

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        # Tune tells the scheduler of a failure it will retry as of any other (on_trial_error),
        # then adds the trial again, pending, to restart from its checkpoint: it has not ended,
        # and ranks and is promoted as before.
        if trial.status == Trial.PENDING:
            self.ended.discard(trial.trial_id)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._end(trial)
        self._fill_free_slot(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        # Tune sets a trial it will retry to ERROR before it tells the scheduler, and the retry
        # keeps the slot; a final error comes while the trial still runs (or waits) in its slot.
        frees_slot = trial.status in (Trial.RUNNING, Trial.PENDING)
        self._end(trial)
        if frees_slot:
            self._fill_free_slot(tune_controller)

    def _fill_free_slot(self, tune_controller: Any) -> None:
        """A trial's worker came free as it ended: a paused trial that ranks in its rung's top runs
        on there before a new configuration starts. Tune tells the scheduler before the searcher,
        so the limiter hands the slot over with no new configuration in between."""
        best = self._promotable()
        if best is not None:
            self._resume(tune_controller, *best)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._end(trial)

    def _end(self, trial: Trial) -> None:
        self.ended.add(trial.trial_id)
        if trial.trial_id in self.resume:
            self.resume.remove(trial.trial_id)

    def debug_string(self) -> str:
        rungs = ", ".join(f"{m}: {len(s)}" for m, s in zip(self.milestones, self.scores))
        return f"ASHA with promotions: trials per rung {{{rungs}}}, {len(self.resume)} promoted to resume"


class PromotionState(Callback):
    """Saves ``scheduler``'s rungs with Tune's experiment state and restores them on a resume.

    Tune pickles its callbacks and its scheduler together when a search starts (``tuner.pkl``) and
    restores a search from that pickle, so this callback and the scheduler come back as a pair."""

    def __init__(self, scheduler: PromotingAsha) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return self.scheduler.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state)


def _has_free_slot(limiter: Any) -> bool:
    """Whether ``limiter`` (a ``ConcurrencyLimiter``) runs fewer trials than it may."""
    return isinstance(limiter, ConcurrencyLimiter) and len(limiter.live_trials) < limiter.max_concurrent


def _pause_restored(tune_controller: Any, trial: Trial) -> None:
    """Set a trial that a resumed search got back as pending, but that was paused at a rung, to
    paused again: Tune starts every pending trial, whatever the scheduler chooses. Its saved
    checkpoint is where it paused. Tune's controller offers no public way to set a status."""
    controller = getattr(tune_controller, "_tune_controller", tune_controller)
    controller._set_trial_status(trial, Trial.PAUSED)


def _stop_paused(tune_controller: Any, trial: Trial) -> None:
    """Stop a paused trial, and have Tune save its new state.

    Tune (2.x) marks a trial for its next experiment-state save when it stops the trial's actor; a
    paused trial has none, so its saved state would stay PAUSED and a resumed search would train it
    again. The scheduler's view of the controller does not offer the mark: it is taken from the
    controller behind it."""
    tune_controller.stop_trial(trial)
    controller = getattr(tune_controller, "_tune_controller", tune_controller)
    controller._mark_trial_to_checkpoint(trial)
