"""Validation of a parsed space file: a walk over the trial schema, plus a few cross-field rules.

What a section holds, each setting's type, bounds and whether it may be searched, and which
options a switch has with which parameters, all come from ``trainables.config`` (sections, in
``LAYOUT`` order) and the registries behind its switches; a section, setting or option added
there (or by a plugin) is validated without a change here. The rules that need more than one
field stay here: heads against the data set's description, losses against their head (output
units, the loss's own checks at the values a search may reach), objectives against the
trainer's metrics, and the search settings against each other.

Every problem becomes a SpaceIssue with the file, the line, the YAML path, the rule and the value.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import os
import typing
from pathlib import Path
from typing import Any

from search.space._compile import Branch, Const, Entry, Param
from search.space._distributions import MAX_PROBES, PROBES_RULE, Choice, Grid, probe_values
from search.space._issues import Plain, SpaceError, SpaceIssue, join_path, quoted
from search.space._parse import parse_yaml_text, read_space_file
from search.space._schema import (
    SEARCH_NAME_RULE,
    MlflowSettings,
    Objective,
    Resources,
    SearchSettings,
    Space,
    is_search_name,
)
from search.space._temporal import SECTION as TEMPORAL
from search.space._temporal import runs_over_time, temporal_issues
from search.space._hook_rules import hook_issues
from search.space._settings_rules import device_issues, search_issues
from search.space._values import NOTHING, Fixed, ValueChecker
from trainables.config import DRIVER_SECTIONS, LAYOUT, SECTIONS, HeadConfig, TrialConfig, section_fields
from trainables.data import DATASETS, DEFAULT_VIMH_PATH, DataError, DataSpec, HeadInfo, describe_dataset
from trainables.flat_keys import HEAD_LOSS, HEADS, FlatKey
from trainables.losses import check_fits_head, check_loss
from trainables.metric_names import BREAKDOWN_TERMS, HEAD_NAMES_RULE, better_mode, metric_names
from trainables.settings import SettingError, ValueType, value_type
from trainables.switches import Switch, switch_field

__all__ = ["load_space"]

_MODES = ValueType("literal", members=("min", "max"))
_SWITCH_FORM = "an option name, {name: {param: value}} or {choice: {name: {param: value}, ...}}"


def load_space(path: str | Path, *, text: str | None = None) -> Space:
    """Parse and validate a space file; raises SpaceError listing every problem. ``text``: the
    file's content as recorded earlier (a resumed search's original space), read instead of it."""
    if text is None:
        text, parsed = read_space_file(path)
    else:
        parsed = parse_yaml_text(text, file=str(path))
    walk = _Walk(file=str(path), lines=parsed.lines, issues=list(parsed.issues))
    return walk.space(parsed.value, path=Path(path), text=text)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


class _Walk(ValueChecker):
    def space(self, doc: Any, *, path: Path, text: str) -> Space:
        if not isinstance(doc, dict):
            shown = doc if doc is not None else Plain("an empty document")
            issue = SpaceIssue(self.file, "", "a mapping of sections at the top level (data, model, train, heads, ...)",
                               shown, line=self._line(""))
            raise SpaceError([*self.issues, issue])
        doc = self.mapping(doc, "", what="sections") or {}
        self.known_keys(doc, "", dict.fromkeys([*DRIVER_SECTIONS[:1], *LAYOUT, *DRIVER_SECTIONS[1:]]))
        if "objective" not in doc:
            self.add("objective", "an `objective` section ({metric, mode} or a list of them)", NOTHING)
        name = self.name(doc.get("name"), default=path.stem)
        data, available, entries = self.data(doc.get("data"))
        heads: dict[str, HeadInfo] | None = None
        objectives: list[Objective] = []
        for key in LAYOUT:
            if key == "data":
                continue
            if key == HEADS:
                heads, head_entries = self.heads(doc.get(HEADS), available)
                entries += head_entries
            elif key == "objective":
                objectives = self.objectives(doc.get("objective"), heads, temporal=runs_over_time(entries))
                if objectives:  # the trainer tracks one objective (best/<metric>, patience): the first
                    entries += [Const("objective.metric", objectives[0].metric),
                                Const("objective.mode", objectives[0].mode)]
            elif key in SECTIONS:
                entries += self.section(doc.get(key), key, SECTIONS[key])
            else:  # a top-level setting of a trial (energy_weight)
                parsed = self.value(doc.get(key, _default(TrialConfig, key)), key, value_type(_hints(TrialConfig)[key]))
                if parsed is not None:
                    entries.append(self.entry(key, parsed, key))
        search = self.settings(doc.get("search"), "search", SearchSettings)
        resources = self.settings(doc.get("resources"), "resources", Resources)
        mlflow = self.settings(doc.get("mlflow"), "mlflow", MlflowSettings)
        crossed = search_issues(search, entries, objectives, doc.get("search")) if search is not None else []
        crossed += device_issues(resources, entries) if resources is not None else []
        if not any(issue.path.startswith(("model", TEMPORAL)) for issue in self.issues):
            crossed += temporal_issues(entries, given=TEMPORAL in doc)
        # with a head itself refused (not one of its settings), the trained heads are not what the
        # file meant: a rule on their number would only add a false problem
        if heads is not None and not any(issue.path.split(".")[0] == HEADS and issue.path.count(".") <= 1
                                         for issue in self.issues):
            crossed += hook_issues(entries, heads=list(heads))
        for key, rule, value in crossed:
            self.add(self.option_paths.get((key, value), self.paths.get(key, key)), rule, value)
        if self.issues:
            raise SpaceError(sorted(self.issues, key=lambda issue: issue.line or 0))
        assert all(v is not None for v in (data, heads, search, resources, mlflow, name))  # no issues: all set
        return Space(name=name, path=path, text=text, data=data, heads=heads, objectives=objectives, search=search,
                     resources=resources, mlflow=mlflow, entries=tuple(entries),
                     constants={e.key: e.value for e in entries if isinstance(e, Const)})

    def name(self, value: Any, *, default: str) -> str | None:
        if value is None and is_search_name(default):
            return default
        if value is None:
            self.add("name", f"{SEARCH_NAME_RULE} (without `name`, the file's name is used)", default)
        elif not is_search_name(value):
            self.add("name", SEARCH_NAME_RULE, value)
        return value if is_search_name(value) else None

    # ------------------------------------------------------------------ sections

    def section(self, value: Any, name: str, cls: type, *, required: tuple[str, ...] = ()) -> list[Entry]:
        """A section's entries, every field from the file or its default, in field order. A section
        that is only a switch may be written as the switch (``weighting: dwa``)."""
        hints, found, fields = _hints(cls), switch_field(cls), section_fields(cls)
        bare = found is not None and fields == [found[0]] and (isinstance(value, str) or isinstance(value, dict) and len(
            value) == 1 and next(iter(value)) in (*found[1].options, "choice", "grid"))
        value = {found[0]: value} if bare else value
        mapping = self.mapping(value, name, what=f"the `{name}` settings")
        if mapping is None:
            return []
        extra = {k: v for k, v in mapping.items() if k not in fields}
        # A switch given as one option's name may have that option's parameters beside it
        # (model: {kind: mlp, hidden: 16}).
        option = mapping.get(found[0], _default(cls, found[0])) if found is not None else None
        named = found is not None and isinstance(option, str) and option in found[1].options
        beside = found[1].parameters(option) if named else {}
        if found is None or named or not isinstance(option, str):  # an unknown option: its own issue
            self.known_keys({k: v for k, v in extra.items() if k not in beside}, name, [*fields, *beside])
        # A name that is a setting of the section too (weighted_ce's `weight`) is the section's.
        extra = {k: v for k, v in extra.items() if k in beside}
        entries: list[Entry] = []
        for field in fields:
            path = join_path(name, field)
            if found is not None and field == found[0]:
                branch = self.switch(mapping.get(field, _default(cls, field)), path, found[1], extra, prefix=name,
                                     at=name if bare else path)
                entries += [branch] if branch is not None else []
            elif field in mapping:
                parsed = self.value(mapping[field], path, value_type(hints[field]))
                entries += [self.entry(path, parsed, path)] if parsed is not None else []
            elif field in required:
                vtype = value_type(hints[field])
                self.add(path, f"a value ({vtype.describe() if vtype else 'required'})", NOTHING)
            else:
                entries.append(self.entry(path, Fixed(_default(cls, field)), path))
        return entries

    def switch(self, value: Any, key: str, switch: Switch, beside: dict[str, Any], *, prefix: str,
               at: str) -> Branch | None:
        """A switch (flat key ``key``, at YAML path ``at``): an option name (with ``beside``: its
        parameters written next to the switch), ``{name: {params}}``, or
        ``{choice|grid: {name: {params}, ...} | [name, ...]}``."""
        path = at
        # (option, its params, YAML path of the option's name, YAML path of its params)
        options: list[tuple[Any, Any, str, str]] = []
        distribution: type[Choice] | None = None
        if isinstance(value, str):
            # its parameters go beside it, in the mapping that holds it, also the ones it lacks
            options.append((value, beside, path, path.rsplit(".", 1)[0]))
        elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("choice", "grid"):
            kind, alternatives = next(iter(value.items()))
            distribution, cpath = (Grid if kind == "grid" else Choice), join_path(path, kind)
            if isinstance(alternatives, dict) and alternatives:
                options += [(o, params, join_path(cpath, o), join_path(cpath, o)) for o, params in alternatives.items()]
            elif isinstance(alternatives, list) and alternatives:
                for index, item in enumerate(alternatives):
                    ipath = join_path(cpath, index)
                    if isinstance(item, dict) and len(item) == 1:
                        (option, params), = item.items()
                        options.append((option, params, ipath, join_path(ipath, option)))
                    else:
                        options.append((item, {}, ipath, ipath))
            else:
                self.add(cpath, f"a non-empty mapping option -> parameters for `{kind}`", alternatives)
                return None
        elif isinstance(value, dict) and len(value) == 1:
            (option, params), = value.items()
            options.append((option, params, join_path(path, option), join_path(path, option)))
        else:
            self.add(path, _SWITCH_FORM, value)
            return None
        compiled: dict[str, tuple[Entry, ...]] = {}
        for option, params, name_path, params_path in options:
            if not isinstance(option, str) or option not in switch.options:
                self.add(name_path, f"one of: {', '.join(switch.options)}",
                         quoted(option) if isinstance(option, str) else option)
            elif option in compiled:
                self.add(name_path, "each option once per choice", quoted(option, " again"))
            else:
                self.option_paths[key, option] = name_path
                compiled[option] = self.parameters(switch, option, params, params_path, prefix=prefix)
        if len(compiled) != len(options):
            return None
        self.paths[key] = path
        return Branch(key, compiled, distribution(tuple(compiled)) if distribution else None)

    def parameters(self, switch: Switch, option: str, value: Any, path: str, *, prefix: str) -> tuple[Entry, ...]:
        """An option's parameters: those the file sets (file order), then, for a ``complete``
        switch, the defaults of the others (signature order: complete options list every one)."""
        mapping = self.mapping(value, path, what=f"parameters of `{option}`") or {}
        allowed = switch.parameters(option)
        # Only what a space can check may be set: a parameter without a checkable type (a tuple of
        # fixed length, Any) keeps its default.
        settable = {p: a for p, a in allowed.items() if value_type(a.annotation) is not None}
        entries: dict[str, Entry] = {}
        for param, raw in mapping.items():
            ppath, key = join_path(path, param), f"{prefix}.{option}.{param}"
            if param in allowed and param not in settable:  # untyped, or of a type no space checks
                self.add(ppath, f"a parameter of `{option}` whose annotation in its constructor is a type a space can "
                                f"check (float, int, bool, str, a Literal, a list of numbers, optionally Annotated "
                                f"with a Rule)", quoted(param))
                continue
            if param not in settable:
                self.add(ppath, f"a parameter of `{option}` (one of: {', '.join(settable) or 'none'})", quoted(param))
                continue
            vtype = value_type(settable[param].annotation)
            if switch.searchable(option, param):
                vtype = dataclasses.replace(vtype, searchable=True)
            parsed = self.value(raw, ppath, vtype)
            if parsed is not None:
                entries[param] = self.entry(key, parsed, ppath)
        for param, parameter in allowed.items():
            if parameter.default is inspect.Parameter.empty and param not in mapping:
                self.add(join_path(path, param), f"a value for `{param}` (`{option}` has no default)", NOTHING)
        if not switch.complete:
            return tuple(entries.values())
        defaults = switch.defaults(option)  # what a complete option lists when the file does not say
        return tuple(entries.get(p) or self.entry(f"{prefix}.{option}.{p}", Fixed(_json(defaults[p])), path)
                     for p in allowed if p in entries or p in defaults)

    def data(self, value: Any) -> tuple[DataSpec | None, dict[str, HeadInfo] | None, list[Entry]]:
        """(the data spec, the data set's heads, the entries): a relative path is pinned to the
        current directory (trials run in their own directories)."""
        entries = self.section(value, "data", DataSpec, required=("kind",))
        values = {FlatKey.parse(e.key).name: e.value for e in entries if isinstance(e, Const)}
        if "kind" not in values or self.failed("data.kind", "data.path"):
            return None, None, entries
        path = values.get("path") or (DEFAULT_VIMH_PATH if values["kind"] == "vimh" else None)
        values["path"] = os.path.abspath(os.path.expanduser(path)) if path is not None else None
        entries = [Const("data.path", values["path"]) if e.key == "data.path" else e for e in entries]
        if isinstance(value, dict) and "labels" in value and not getattr(DATASETS[values["kind"]], "reads_labels", False):
            # ignored by the trials without a word (before), and printed as if it had chosen them
            readers = ", ".join(k for k, kind in DATASETS.items() if getattr(kind, "reads_labels", False))
            self.add("data.labels", f"no labels setting with data.kind {values['kind']} (its labels are its own; "
                     f"{readers} choose theirs)", value["labels"])
            return None, None, entries
        if values["path"] is not None and not getattr(DATASETS[values["kind"]], "reads_path", True):
            # ignored by the trials, and printed as where the data came from (a trial config of an
            # earlier search that has one still loads)
            self.add("data.path", f"no path with data.kind {values['kind']} (it reads no files)", values["path"])
            return None, None, entries
        try:
            heads = dict(describe_dataset(DataSpec(kind=values["kind"], path=values["path"])))
        except DataError as error:
            self.add("data.path" if values["path"] is not None else "data", "a data set that can be read",
                     Plain(str(error)))
            heads = None
        if self.failed(*(f"data.{k}" for k in values)):
            return None, heads, entries
        try:
            return DataSpec(**values), heads, entries
        except SettingError as error:  # the settings together (val_fraction of at most `limit`)
            self.add(error.key, error.rule, error.value)
            return None, heads, entries

    def heads(self, value: Any, available: dict[str, HeadInfo] | None) -> tuple[dict[str, HeadInfo] | None, list[Entry]]:
        """(the trained heads, their entries). Listed heads are trained (a subset of the data set's);
        without a `heads` section every head of the data set trains with the HeadConfig defaults."""
        if value is None:
            if available is None:
                return None, []
            for name in sorted(set(available) & set(BREAKDOWN_TERMS)):  # every head of the data set trains
                self.add("data", f"a data set whose {HEAD_NAMES_RULE} (or a `heads` section without them)",
                         quoted(name))
            return dict(available), [e for name in available for e in self.head({}, name, available[name])]
        mapping = self.mapping(value, HEADS, what="head name -> {weight, loss}")
        if mapping is None:
            return None, []
        if not mapping:
            self.add(HEADS, "at least one head of the data set (or no `heads` section: all heads, ce)", value)
        trained: dict[str, HeadInfo] = {}
        entries: list[Entry] = []
        for name, spec in mapping.items():
            info = available.get(name) if available is not None else None
            if available is not None and info is None:
                known = ", ".join(available)
                self.add(join_path(HEADS, name), f"a head of the data set (one of: {known})", quoted(name))
            elif name in BREAKDOWN_TERMS:  # its loss would be reported as that term
                self.add(join_path(HEADS, name), HEAD_NAMES_RULE, quoted(name))
            elif info is not None:
                trained[name] = info
            entries += self.head(spec, name, info)  # a head the data set lacks still gets its problems
        return (trained if available is not None else None), entries

    def head(self, value: Any, name: str, info: HeadInfo | None) -> list[Entry]:
        path = join_path(HEADS, name)
        entries = self.section(value, path, HeadConfig)
        for entry in entries:
            if isinstance(entry, Branch) and entry.key.endswith(f".{HEAD_LOSS}") and info is not None:
                bad = [o for o, params in entry.options.items() if not self.loss_fits(o, params, info, name)]
                if bad:
                    return [e for e in entries if e is not entry]
        return entries

    def loss_fits(self, loss: str, params: tuple[Entry, ...], info: HeadInfo, head: str) -> bool:
        """Cross-field rules of a head's loss: output units against the head's kind, and the loss's
        own checks (sigma > 0, len(alpha) == C, alpha + beta > 0, ...) at every combination of the
        fixed values and the searched parameters' probe values, so they fail here, not in a trial."""
        where = self.option_paths[f"{HEADS}.{head}.{HEAD_LOSS}", loss]
        if any(issue.path.startswith(where) for issue in self.issues):
            return False  # its parameters have problems of their own already
        try:
            check_fits_head(loss, num_classes=info.num_classes, ordinal=info.ordinal, head=head, key=where)
        except SettingError as error:
            self.add(where, error.rule, Plain(f"`{loss}`"))
            return False
        name_of = {e.key: FlatKey.parse(e.key).name for e in params}
        fixed = {name_of[e.key]: e.value for e in params if isinstance(e, Const)}
        searched = {name_of[e.key]: probe_values(e.distribution) for e in params if isinstance(e, Param)}
        combinations = math.prod(len(values) for values in searched.values())
        if combinations > MAX_PROBES:
            self.add(where, PROBES_RULE, combinations)
            return False
        for drawn in itertools.product(*searched.values()):
            values = {**fixed, **dict(zip(searched, drawn))}
            try:
                check_loss(loss, num_classes=info.num_classes, **values)
            except SettingError as error:  # error.key: the parameter the loss refused
                path = self.paths.get(f"{HEADS}.{head}.{loss}.{error.key}", where)
                rule = error.rule if len(searched) < 2 else (
                    f"{error.rule}, for every combination the search may draw (fails at "
                    f"{', '.join(f'{name}={value!r}' for name, value in zip(searched, drawn))})")
                self.add(path, rule, values.get(error.key, Plain(f"`{loss}`")))
                return False
            except (ValueError, TypeError) as error:  # a loss (a plugin's) that says why only in text
                self.add(where, f"parameters `{loss}` accepts", Plain(f"{type(error).__name__}: {error}"))
                return False
        return True

    # ------------------------------------------------------------------ the driver's sections

    def objectives(self, value: Any, heads: dict[str, HeadInfo] | None, *, temporal: bool) -> list[Objective]:
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            self.add("objective", "at least one {metric, mode}", value)
        # no head taken (each refused, a problem of its own): no metric to check the objective against
        names = metric_names(heads, split="val", temporal=temporal) if heads else None
        objectives: list[Objective] = []
        for index, item in enumerate(items):
            path = join_path("objective", index) if isinstance(value, list) else "objective"
            mapping = self.mapping(item, path, what="{metric, mode}")
            if mapping is None:
                continue
            self.known_keys(mapping, path, ("metric", "mode"))
            metric, mode = mapping.get("metric"), mapping.get("mode")
            mpath = join_path(path, "metric")
            before = len(self.issues)
            if not isinstance(metric, str):
                self.add(mpath, "a metric name such as val/mae_norm_mean", metric if "metric" in mapping else NOTHING)
            elif "loss" in metric.lower():
                self.add(mpath, "a task metric such as val/mae_norm_mean or val/acc_mean, never a loss value "
                         "(loss values of different loss types are not comparable)", metric)
            elif names is not None and metric not in names:
                split, _, name = metric.partition("/")
                if split in ("train", "test") and f"val/{name}" in names:
                    self.add(mpath, f"a metric of the validation split (val/{name}): a search selects on it and "
                             "keeps the test split for the best trial's final figures", metric)
                else:
                    self.add(mpath, f"a metric the trainer reports (one of: {', '.join(names)})", metric)
            if not _MODES.check(mode)[0]:
                self.add(join_path(path, "mode"), _MODES.describe(), mode if "mode" in mapping else NOTHING)
            elif len(self.issues) == before and isinstance(metric, str) and mode != better_mode(metric):
                # the best trial would have been the worst one
                self.add(join_path(path, "mode"), f"{better_mode(metric)} for {metric} (it improves as it "
                         f"{'falls' if better_mode(metric) == 'min' else 'rises'})", mode)
            if len(self.issues) == before and any(o.metric == metric for o in objectives):
                self.add(mpath, "each metric once", metric)
            elif len(self.issues) == before:
                objectives.append(Objective(metric=metric, mode=mode))
        return objectives

    def settings(self, value: Any, section: str, cls: type) -> Any:
        """A driver settings section (search, resources, mlflow) into its dataclass."""
        mapping = self.mapping(value, section, what=f"the `{section}` settings")
        if mapping is None:
            return None
        hints, fields = _hints(cls), section_fields(cls)
        self.known_keys(mapping, section, fields)
        values, ok = {}, True
        for key in (k for k in fields if k in mapping):
            good, values[key] = self.fixed(mapping[key], f"{section}.{key}", value_type(hints[key]))
            ok = ok and good
        return cls(**values) if ok else None


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _default(cls: type, name: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default
