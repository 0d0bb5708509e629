"""Typed, complete validation of a parsed space file, producing a Space.

Every problem becomes a SpaceIssue with the file, the YAML path, the rule and the value; all of
them are raised together. What the validator checks against is read from the code that uses it:
loss names and parameters from ``trainables.losses`` (signatures), heads from the data set's
description, objectives from the trainer's metric names, setting names, types and defaults from
``trainables.config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.space._compile import Const, Entry, LossSwitch, Param, grid_space
from search.space._distributions import (
    DISTRIBUTIONS,
    Choice,
    Distribution,
    Grid,
    IntRange,
    LogUniform,
    Uniform,
    ValueType,
    value_type_from_annotation,
)
from search.space._issues import Plain, SpaceError, SpaceIssue, join_path
from search.space._parse import read_space_file
from search.space._schema import (
    SEARCH_NAME_RULE,
    MlflowSettings,
    Objective,
    Resources,
    SearchSettings,
    Space,
    is_search_name,
)
from trainables.config import DataConfig, EnergyConfig, ModelConfig, TrainConfig
from trainables.data import DATASETS, DEFAULT_VIMH_PATH, DataError, DataSpec, HeadInfo, describe_dataset
from trainables.losses import LOSSES, build_loss, loss_parameters
from trainables.metrics import metric_names
from trainables.models import MODELS

__all__ = ["load_space"]

_NOTHING = Plain("nothing")
_SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class _Rule:
    """Bounds of a setting and whether it may be searched; its type comes from the config class."""

    searchable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    max_open: bool = False
    members: tuple[Any, ...] | None = None  # replaces the annotation's type (registry names)


# Per trial-config section: which settings may be searched, and their bounds. Settings a config
# class gains later are accepted as fixed values of their annotated type.
# Fixed on purpose: the data set and the model kind define the problem being compared; epochs and
# patience are the budget a scheduler divides; seed, threads, amp and device make a trial
# reproducible on given hardware. data.* bounds follow trainables.data.DataSpec (the stricter of
# DataSpec and DataConfig).
_RULES: dict[str, dict[str, _Rule]] = {
    "data": {
        "kind": _Rule(members=tuple(sorted(DATASETS))),
        "val_fraction": _Rule(minimum=0.0, maximum=1.0, min_open=True, max_open=True),
        "limit": _Rule(minimum=2),
        "seed": _Rule(minimum=0),
    },
    "model": {
        "kind": _Rule(members=tuple(sorted(MODELS))),
        "hidden": _Rule(searchable=True, minimum=1, maximum=65_536),
        "dropout": _Rule(searchable=True, minimum=0.0, maximum=1.0, max_open=True),
    },
    "train": {
        "epochs": _Rule(minimum=1, maximum=100_000),
        "batch_size": _Rule(searchable=True, minimum=1, maximum=1 << 20),
        "lr": _Rule(searchable=True, minimum=0.0, min_open=True),
        "weight_decay": _Rule(searchable=True, minimum=0.0),
        "grad_clip": _Rule(searchable=True, minimum=0.0),
        "patience": _Rule(minimum=1, maximum=100_000),
        "seed": _Rule(minimum=0),
        "threads": _Rule(minimum=1, maximum=1024),
    },
    "energy": {"p": _Rule(searchable=True, minimum=1)},
}
_CONFIG_CLASSES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "energy": EnergyConfig,
}
# Upper bounds refuse what no machine can run (a billion trials, a year of budget), before the
# driver builds anything for them.
_SEARCH_RULES: dict[str, _Rule] = {
    "num_samples": _Rule(minimum=1, maximum=100_000),
    "grace_period": _Rule(minimum=1),
    "reduction_factor": _Rule(minimum=1.0, min_open=True, maximum=100.0),
    "max_concurrent": _Rule(minimum=1, maximum=1_000),
    "seed": _Rule(minimum=0),
    "time_budget_s": _Rule(minimum=0.0, min_open=True, maximum=366 * 24 * 3600.0),
    "max_failures": _Rule(minimum=0, maximum=100),
}
_RESOURCE_RULES: dict[str, _Rule] = {
    "cpu": _Rule(minimum=0.0, min_open=True, maximum=1024.0),
    "gpu": _Rule(minimum=0.0, maximum=64.0),
}
_WEIGHT = ValueType("float", minimum=0.0)
_TOP_KEYS = ("name", "data", "model", "train", "heads", "energy_weight", "energy", "objective", "search",
             "resources", "mlflow")
_MODES = ValueType("literal", members=("min", "max"))
_DEFAULT_HEAD = {"weight": 1.0, "loss": "ce"}
_DISTRIBUTIONS_FOR = {"int": "`int`, `choice` or `grid`", "float": "`uniform`, `loguniform`, `choice` or `grid`"}


def load_space(path: str | Path) -> Space:
    """Parse and validate a space file; raises SpaceError listing every problem."""
    text, parsed = read_space_file(path)
    checker = _Checker(file=str(path), lines=parsed.lines, issues=list(parsed.issues))
    return checker.space(parsed.value, path=Path(path), text=text)


@dataclass(frozen=True)
class _Fixed:
    value: Any


def _type_of(annotation: Any, rule: _Rule) -> ValueType | None:
    if rule.members is not None:
        return ValueType("literal", members=rule.members)
    base = value_type_from_annotation(annotation)
    if base is None:
        return None
    return dataclasses.replace(
        base, minimum=rule.minimum, maximum=rule.maximum, min_open=rule.min_open, max_open=rule.max_open
    )


def _probe_values(distribution: Distribution) -> tuple[Any, ...]:
    """The values that show whether a distribution stays within what a loss accepts."""
    if isinstance(distribution, Choice):
        return distribution.values
    return (distribution.low, distribution.high)


class _Checker:
    """Collects issues while walking the document; one instance per file."""

    def __init__(self, *, file: str, lines: dict[str, int], issues: list[SpaceIssue]) -> None:
        self.file = file
        self.lines = lines
        self.issues = issues

    # ----------------------------------------------------------------- reporting helpers

    def add(self, path: str, rule: str, value: Any) -> None:
        self.issues.append(SpaceIssue(self.file, path, rule, value, line=self._line(path)))

    def _line(self, path: str) -> int | None:
        """The line of `path`, or of its nearest parent in the file (a missing key: its section)."""
        while path not in self.lines:
            if not path:
                return None
            parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
            path = "" if parent == path else parent
        return self.lines[path]

    def mapping(self, value: Any, path: str, *, what: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"a mapping ({what})", value)
            return None
        for key in value:
            if not isinstance(key, str):
                self.add(path, "string keys", key)
        return {k: v for k, v in value.items() if isinstance(k, str)}

    def known_keys(self, value: dict[str, Any], path: str, allowed: typing.Iterable[str]) -> None:
        allowed = list(allowed)
        section = f"`{path}`" if path else "the top level"
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean `{close[0]}`?" if close else ""
                self.add(join_path(path, key), f"a key of {section} (one of: {', '.join(allowed)}{hint})",
                         Plain(f"`{key}`"))

    # ----------------------------------------------------------------- values

    def fixed(self, value: Any, path: str, vtype: ValueType | None) -> tuple[bool, Any]:
        """Check a literal; (ok, converted value)."""
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS:
            self.add(path, f"a fixed value ({vtype.describe() if vtype else 'a literal'}): this setting is not searched", value)
            return False, value
        if vtype is None:
            ok = _json_safe(value)
            if not ok:
                self.add(path, "a JSON-safe literal (null, true/false, number, string, or lists of them)", value)
            return ok, value
        ok, converted = vtype.check(value)
        if not ok:
            self.add(path, vtype.describe(), value)
        return ok, converted

    def tunable(self, value: Any, path: str, vtype: ValueType | None) -> _Fixed | Distribution | None:
        """A literal or one distribution; None after reporting a problem."""
        if not isinstance(value, dict):
            ok, converted = self.fixed(value, path, vtype)
            return _Fixed(converted) if ok else None
        names = ", ".join(DISTRIBUTIONS)
        if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
            expected = vtype.describe() if vtype else "a literal"
            self.add(path, f"{expected}, or one distribution as a one-key mapping ({names})", value)
            return None
        kind, args = next(iter(value.items()))
        dpath = join_path(path, kind)
        if vtype is None or vtype.kind == "floats":
            self.add(path, "a literal: only scalar settings can be searched (Optuna choices are scalars)", value)
            return None
        if kind in ("choice", "grid"):
            return self._categorical(kind, args, dpath, vtype)
        return self._range(kind, args, dpath, vtype)

    def _categorical(self, kind: str, args: Any, path: str, vtype: ValueType) -> Distribution | None:
        if not isinstance(args, list) or not args:
            self.add(path, f"a non-empty list of values for `{kind}`", args)
            return None
        values = []
        ok = True
        for index, item in enumerate(args):
            item_ok, converted = vtype.check(item)
            if not item_ok:
                self.add(join_path(path, index), vtype.describe(), item)
                ok = False
            elif converted in values:
                self.add(join_path(path, index), f"distinct values in `{kind}`", item)
                ok = False
            values.append(converted)
        cls = Grid if kind == "grid" else Choice
        return cls(tuple(values)) if ok else None

    def _range(self, kind: str, args: Any, path: str, vtype: ValueType) -> Distribution | None:
        wanted = "int" if kind == "int" else "float"
        if vtype.kind != wanted:
            hint = _DISTRIBUTIONS_FOR.get(vtype.kind, "`choice` or `grid`")
            self.add(path, f"{hint} for a setting that takes {vtype.describe()}", Plain(f"`{kind}`"))
            return None
        number = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" else _is_number
        if not isinstance(args, list) or len(args) != 2 or not all(number(v) for v in args):
            what = "integers" if kind == "int" else "numbers"
            self.add(path, f"[lo, hi] with two {what} for `{kind}`", args)
            return None
        low, high = args
        ok = True
        if not low < high:
            self.add(path, "lo < hi", args)
            ok = False
        if kind == "loguniform" and low <= 0:
            self.add(path, "lo > 0 for `loguniform`", args)
            ok = False
        for bound in args if ok else ():
            if not vtype.check(bound)[0]:
                self.add(path, f"bounds that are {vtype.describe()}", args)
                ok = False
                break
        if not ok:
            return None
        if kind == "int":
            return IntRange(low, high)
        return (LogUniform if kind == "loguniform" else Uniform)(float(low), float(high))

    @staticmethod
    def entry(key: str, parsed: _Fixed | Distribution) -> Entry:
        return Const(key, parsed.value) if isinstance(parsed, _Fixed) else Param(key, parsed)

    # ----------------------------------------------------------------- sections

    def space(self, doc: Any, *, path: Path, text: str) -> Space:
        if not isinstance(doc, dict):
            issue = SpaceIssue(self.file, "", "a mapping of sections at the top level (data, model, train, heads, ...)",
                               doc if doc is not None else Plain("an empty document"), line=self._line(""))
            raise SpaceError([*self.issues, issue])
        doc = self.mapping(doc, "", what="sections") or {}
        self.known_keys(doc, "", _TOP_KEYS)
        if "objective" not in doc:
            self.add("objective", "an `objective` section ({metric, mode} or a list of them)", _NOTHING)

        name = self.name(doc.get("name"), default=path.stem)
        data_values, data_entries = self.config_section(doc.get("data"), "data", required=("kind",))
        data, describable = self.data_spec(data_values)
        if describable is not None:
            data_entries = [Const("data.path", describable.path) if e.key == "data.path" else e for e in data_entries]
        available = self.describe(describable)
        _, model_entries = self.config_section(doc.get("model"), "model")
        train_values, train_entries = self.config_section(doc.get("train"), "train")
        heads, head_entries = self.heads(doc.get("heads"), available)
        energy_weight = self.tunable(doc.get("energy_weight", 0.0), "energy_weight", _WEIGHT)
        _, energy_entries = self.config_section(doc.get("energy"), "energy")
        objectives = self.objectives(doc.get("objective"), heads)
        search = self.settings(doc.get("search"), "search", SearchSettings, _SEARCH_RULES)
        resources = self.settings(doc.get("resources"), "resources", Resources, _RESOURCE_RULES)
        mlflow = self.settings(doc.get("mlflow"), "mlflow", MlflowSettings, {})

        entries: list[Entry] = [*data_entries, *model_entries, *train_entries, *head_entries]
        if energy_weight is not None:
            entries.append(self.entry("energy_weight", energy_weight))
        entries += energy_entries
        if objectives:
            # The trainer tracks one objective (best/<metric>, patience): the first one.
            entries += [Const("objective.metric", objectives[0].metric), Const("objective.mode", objectives[0].mode)]
        if search is not None:
            self.cross_check(search, tuple(entries), objectives, train_values, doc.get("search"))

        if self.issues:
            raise SpaceError(sorted(self.issues, key=lambda issue: issue.line or 0))
        assert data is not None and heads is not None and search is not None  # guaranteed without issues
        assert resources is not None and mlflow is not None and name is not None
        return Space(
            name=name,
            path=path,
            text=text,
            data=data,
            heads=heads,
            objectives=objectives,
            search=search,
            resources=resources,
            mlflow=mlflow,
            entries=tuple(entries),
        )

    def name(self, value: Any, *, default: str) -> str | None:
        if value is None:
            if is_search_name(default):
                return default
            self.add("name", f"{SEARCH_NAME_RULE} (without `name`, the file's name is used)", default)
            return None
        if not is_search_name(value):
            self.add("name", SEARCH_NAME_RULE, value)
            return None
        return value

    def config_section(
        self, value: Any, section: str, *, required: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any], list[Entry]]:
        """A trial-config section: every field of its config class, from the file or the default."""
        cls = _CONFIG_CLASSES[section]
        mapping = self.mapping(value, section, what=f"the `{section}` settings")
        if mapping is None:
            return {}, []
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        self.known_keys(mapping, section, fields)
        values: dict[str, Any] = {}
        entries: list[Entry] = []
        for key, field in fields.items():
            path = f"{section}.{key}"
            rule = _RULES.get(section, {}).get(key, _Rule())
            vtype = _type_of(hints[key], rule)
            if key not in mapping:
                if key in required:
                    self.add(path, f"a value ({vtype.describe() if vtype else 'required'})", _NOTHING)
                    continue
                values[key] = field.default
                entries.append(Const(path, field.default))
                continue
            if rule.searchable:
                parsed = self.tunable(mapping[key], path, vtype)
            else:
                ok, converted = self.fixed(mapping[key], path, vtype)
                parsed = _Fixed(converted) if ok else None
            if parsed is None:
                continue
            if isinstance(parsed, _Fixed):
                values[key] = parsed.value
            entries.append(self.entry(path, parsed))
        return values, entries

    def data_spec(self, values: dict[str, Any]) -> tuple[DataSpec | None, DataSpec | None]:
        """(the data spec, the spec to describe the heads with). A setting that failed its check
        takes its default in the second, so the heads can still be checked; a bad kind or path
        leaves nothing to describe."""
        failed = {issue.path for issue in self.issues}
        if "kind" not in values or failed & {"data.kind", "data.path"}:
            return None, None
        path = values.get("path")
        if path is None and values["kind"] == "vimh":
            path = DEFAULT_VIMH_PATH
        # Trials run in their own working directories: pin relative paths to the current one.
        values["path"] = os.path.abspath(os.path.expanduser(path)) if path is not None else None
        describable = DataSpec(kind=values["kind"], path=values["path"])
        try:
            return DataSpec(**values), describable
        except DataError as error:
            self.add(*_split_data_message(str(error)))
            return None, describable

    def describe(self, data: DataSpec | None) -> dict[str, HeadInfo] | None:
        if data is None:
            return None
        try:
            return dict(describe_dataset(data))
        except DataError as error:
            rule, sep, got = str(error).partition(", but got ")
            self.add("data.path" if data.path is not None else "data", rule,
                     Plain(got if sep else "a data set that cannot be described"))
            return None

    def heads(
        self, value: Any, available: dict[str, HeadInfo] | None
    ) -> tuple[dict[str, HeadInfo] | None, list[Entry]]:
        """(the trained heads, their entries). Listed heads are trained (a subset of the data set's);
        without a `heads` section every head of the data set trains with {weight: 1.0, loss: ce}."""
        if value is None:
            if available is None:
                return None, []
            entries = [e for name, info in available.items() for e in self.head(_DEFAULT_HEAD, name, info)]
            return dict(available), entries
        mapping = self.mapping(value, "heads", what="head name -> {weight, loss}")
        if mapping is None:
            return None, []
        if not value:
            self.add("heads", "at least one head of the data set (or no `heads` section: all heads, ce)", value)
        trained: dict[str, HeadInfo] = {}
        entries: list[Entry] = []
        for name, spec in mapping.items():
            info = available.get(name) if available is not None else None
            if available is not None and info is None:
                known = ", ".join(available)
                self.add(join_path("heads", name), f"a head of the data set (one of: {known})", Plain(f"`{name}`"))
            elif info is not None:
                trained[name] = info
            # A head the data set lacks still gets its own problems reported.
            entries += self.head(spec, name, info)
        return (trained if available is not None else None), entries

    def head(self, value: Any, name: str, info: HeadInfo | None) -> list[Entry]:
        path = join_path("heads", name)
        mapping = self.mapping(value, path, what="{weight, loss}")
        if mapping is None:
            return []
        self.known_keys(mapping, path, ("weight", "loss"))
        entries: list[Entry] = []
        weight = self.tunable(mapping.get("weight", 1.0), join_path(path, "weight"), _WEIGHT)
        loss = self.loss(mapping.get("loss", "ce"), join_path(path, "loss"), name, info)
        if weight is not None:
            entries.append(self.entry(f"heads.{name}.weight", weight))
        if loss is not None:
            entries.append(loss)
        return entries

    def loss(self, value: Any, path: str, head: str, info: HeadInfo | None) -> LossSwitch | None:
        """A loss name, {name: {params}}, or {choice|grid: {name: {params}, ...} | [name, ...]}."""
        form = "a loss name, {name: {param: value}} or {choice: {name: {param: value}, ...}}"
        # (name, its params, YAML path of the name, YAML path of the params)
        options: list[tuple[Any, Any, str, str]] = []
        distribution: type[Choice] | None = None
        if isinstance(value, str):
            options.append((value, {}, path, path))
        elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("choice", "grid"):
            kind, alternatives = next(iter(value.items()))
            distribution = Grid if kind == "grid" else Choice
            cpath = join_path(path, kind)
            if isinstance(alternatives, list) and alternatives:
                for index, item in enumerate(alternatives):
                    if isinstance(item, dict) and len(item) == 1:
                        (loss_name, params), ipath = next(iter(item.items())), join_path(cpath, index)
                        options.append((loss_name, params, ipath, join_path(ipath, loss_name)))
                    else:
                        options.append((item, {}, join_path(cpath, index), join_path(cpath, index)))
            elif isinstance(alternatives, dict) and alternatives:
                for loss_name, params in alternatives.items():
                    lpath = join_path(cpath, loss_name)
                    options.append((loss_name, params, lpath, lpath))
            else:
                self.add(cpath, f"a non-empty mapping loss name -> parameters for `{kind}`", alternatives)
                return None
        elif isinstance(value, dict) and len(value) == 1:
            loss_name, params = next(iter(value.items()))
            lpath = join_path(path, loss_name)
            options.append((loss_name, params, lpath, lpath))
        else:
            self.add(path, form, value)
            return None

        compiled: dict[str, tuple[Entry, ...]] = {}
        ok = True
        for loss_name, params, name_path, params_path in options:
            entries = self.loss_option(loss_name, params, name_path, params_path, head, info)
            if entries is None:
                ok = False
            elif loss_name in compiled:
                self.add(name_path, "each loss once per choice", Plain(f"`{loss_name}` again"))
                ok = False
            else:
                compiled[loss_name] = entries
        if not ok:
            return None
        key = f"heads.{head}.loss"
        return LossSwitch(key, compiled, distribution(tuple(compiled)) if distribution else None)

    def loss_option(
        self, name: Any, params: Any, name_path: str, params_path: str, head: str, info: HeadInfo | None
    ) -> tuple[Entry, ...] | None:
        if not isinstance(name, str) or name not in LOSSES:
            self.add(name_path, f"a loss name (one of: {', '.join(LOSSES)})",
                     Plain(f"`{name}`") if isinstance(name, str) else name)
            return None
        ok = True
        if info is not None and not info.ordinal and LOSSES[name].outputs(info.num_classes) < info.num_classes:
            units = LOSSES[name].outputs(info.num_classes)
            self.add(name_path, f"a loss with one output per class on a categorical head (`{name}` regresses the "
                     f"class index with {units} output unit(s), which needs an ordinal head; `{head}` is not)",
                     Plain(f"`{name}`"))
            ok = False
        mapping = self.mapping(params, params_path, what=f"parameters of the `{name}` loss")
        if mapping is None:
            return None
        allowed = loss_parameters(name)
        entries: list[Entry] = []
        fixed: dict[str, Any] = {}
        searched: dict[str, tuple[Distribution, str]] = {}
        for param, raw in mapping.items():
            ppath = join_path(params_path, param)
            if param not in allowed:
                listed = ", ".join(allowed) or "none"
                self.add(ppath, f"a parameter of the `{name}` loss (one of: {listed})", Plain(f"`{param}`"))
                ok = False
                continue
            parsed = self.tunable(raw, ppath, value_type_from_annotation(allowed[param].annotation))
            if parsed is None:
                ok = False
                continue
            if isinstance(parsed, _Fixed):
                fixed[param] = parsed.value
            else:
                searched[param] = (parsed, ppath)
            entries.append(self.entry(f"heads.{head}.{name}.{param}", parsed))
        if ok and info is not None:
            ok = self.probe_loss(name, fixed, searched, params_path, info)
        return tuple(entries) if ok else None

    def probe_loss(
        self, name: str, fixed: dict[str, Any], searched: dict[str, tuple[Distribution, str]], path: str, info: HeadInfo
    ) -> bool:
        """Build the loss at the fixed values and at each end of every searched range, so the
        loss's own checks (sigma > 0, len(alpha) == C, ...) fail here, not in a trial."""

        def build(params: dict[str, Any]) -> str | None:
            try:
                build_loss(name, num_classes=info.num_classes, **params)
            except ValueError as error:
                return str(error).removeprefix(f"loss {name!r}: ")
            return None

        message = build(fixed)
        if message is not None:
            param = message.split(" ", 1)[0]
            where = join_path(path, param) if param in fixed else path
            self.add(where, *_rule_and_value(message, fixed.get(param, Plain(f"`{name}`"))))
            return False
        for param, (distribution, ppath) in searched.items():
            for value in _probe_values(distribution):
                message = build({**fixed, param: value})
                if message is not None:
                    self.add(ppath, *_rule_and_value(message, value))
                    return False
        return True

    def objectives(self, value: Any, heads: dict[str, HeadInfo] | None) -> list[Objective]:
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            self.add("objective", "at least one {metric, mode}", value)
        names = metric_names(heads, split="val") if heads is not None else None
        objectives: list[Objective] = []
        for index, item in enumerate(items):
            path = join_path("objective", index) if isinstance(value, list) else "objective"
            mapping = self.mapping(item, path, what="{metric, mode}")
            if mapping is None:
                continue
            self.known_keys(mapping, path, ("metric", "mode"))
            metric, mode = mapping.get("metric"), mapping.get("mode")
            mpath = join_path(path, "metric")
            ok = True
            if not isinstance(metric, str):
                self.add(mpath, "a metric name such as val/mae_norm_mean", metric if "metric" in mapping else _NOTHING)
                ok = False
            elif "loss" in metric.lower():
                self.add(mpath, "a task metric such as val/mae_norm_mean or val/acc_mean, never a loss value "
                         "(loss values of different loss types are not comparable)", metric)
                ok = False
            elif names is not None and metric not in names:
                self.add(mpath, f"a metric the trainer reports (one of: {', '.join(names)})", metric)
                ok = False
            if "mode" not in mapping:
                self.add(join_path(path, "mode"), _MODES.describe(), _NOTHING)
                ok = False
            elif not _MODES.check(mode)[0]:
                self.add(join_path(path, "mode"), _MODES.describe(), mode)
                ok = False
            if ok and any(o.metric == metric for o in objectives):
                self.add(mpath, "each metric once", metric)
            elif ok:
                objectives.append(Objective(metric=metric, mode=mode))
        return objectives

    def settings(self, value: Any, section: str, cls: type, rules: dict[str, _Rule]) -> Any:
        """A driver settings section (search, resources, mlflow) into its dataclass."""
        mapping = self.mapping(value, section, what=f"the `{section}` settings")
        if mapping is None:
            return None
        fields = [f.name for f in dataclasses.fields(cls)]
        hints = typing.get_type_hints(cls)
        self.known_keys(mapping, section, fields)
        values: dict[str, Any] = {}
        ok = True
        for key in fields:
            if key in mapping:
                good, converted = self.fixed(mapping[key], f"{section}.{key}", _type_of(hints[key], rules.get(key, _Rule())))
                values[key] = converted
                ok = ok and good
        return cls(**values) if ok else None

    def cross_check(
        self,
        search: SearchSettings,
        entries: tuple[Entry, ...],
        objectives: list[Objective],
        train: Mapping[str, Any],
        raw: Any,
    ) -> None:
        if search.sampler == "grid" and grid_space(entries) is None:
            self.add("search.sampler", "`choice` or `grid` for every searched value with the grid sampler "
                     "(uniform, loguniform and int ranges cannot be enumerated)", search.sampler)
        scheduled = search.scheduler != "none"
        if scheduled and len(objectives) > 1:
            self.add("search.scheduler", "`none` with several objectives (a scheduler stops trials on one metric)",
                     search.scheduler)
        epochs = train.get("epochs")
        if scheduled and isinstance(epochs, int) and search.grace_period > epochs:
            path = "search.grace_period" if isinstance(raw, dict) and "grace_period" in raw else "search"
            self.add(path, f"a grace period of at most train.epochs ({epochs}) epochs", search.grace_period)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_safe(value: Any) -> bool:
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, _SCALAR_TYPES)


def _rule_and_value(message: str, value: Any) -> tuple[str, Any]:
    """Split a trainables message "`rule`, but got `value`" into the rule; keep our own value."""
    return message.split(", but got ", 1)[0], value


def _split_data_message(message: str) -> tuple[str, str, Any]:
    """"data.limit must be ..., but got 1" -> ("data.limit", "must be ...", 1 as written)."""
    match = re.match(r"^(data\.\w+) (.*?), but got (.*)$", message)
    if match:
        return match.group(1), match.group(2).removeprefix("must be "), Plain(match.group(3))
    return "data", "settings the data set accepts", Plain(message)

