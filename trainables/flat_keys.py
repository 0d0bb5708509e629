"""Flat trial-config keys: the one place that builds, parses, splits and abbreviates them.

A trial's configuration is a flat, JSON-safe mapping (Ray's config, MLflow's params, the lines of
``best_config.yaml``). Its keys are::

    energy_weight                      a top-level setting
    <section>.<field>                  train.lr, model.kind (a switch: the chosen option)
    <section>.<option>.<param>         model.mlp.hidden: a parameter of the option a switch chose
    heads.<head>.<field>               heads.pitch.weight, heads.pitch.loss (a switch)
    heads.<head>.<option>.<param>      heads.pitch.ordinal.alpha

A switch's parameters are namespaced by the option, so one flat name never carries two
distributions (``alpha`` of ``ordinal`` and ``alpha`` of ``focal`` are different keys).
Nothing here imports torch: the report reads keys without the trainer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from trainables.settings import RebuiltFromFields

__all__ = ["HEADS", "HEAD_LOSS", "WEIGHTS_PREFIX", "FlatKey", "FlatKeyError", "head_losses", "varied_keys"]

# + a head's name: the metric of the effective weight of its loss, reported every epoch by the
# weighting strategy (trainables.weighting) and read back by the report.
WEIGHTS_PREFIX = "weights/"

HEADS = "heads"  # the section that holds one sub-section per head
HEAD_LOSS = "loss"  # the head's loss switch


class FlatKeyError(RebuiltFromFields, ValueError):
    """A string that is not a flat key (``key``: the string)."""

    _fields = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"a flat key such as train.lr or heads.<head>.<loss>.<param>, but got {key!r}")


@dataclass(frozen=True)
class FlatKey:
    """One flat key, split: ``section`` is () at the top level, ("train",) for a section and
    ("heads", "pitch") for a head; ``option`` is the switch option a parameter belongs to."""

    section: tuple[str, ...]
    name: str
    option: str | None = None

    @classmethod
    def parse(cls, key: str) -> FlatKey:
        parts = key.split(".")
        if not all(parts):
            raise FlatKeyError(key)
        width = 2 if parts[0] == HEADS else (0 if len(parts) == 1 else 1)
        section, rest = tuple(parts[:width]), parts[width:]
        if len(section) != width or len(rest) not in (1, 2):
            raise FlatKeyError(key)
        if len(rest) == 1:
            return cls(section, rest[0])
        return cls(section, rest[1], option=rest[0])

    def __str__(self) -> str:
        middle = () if self.option is None else (self.option,)
        return ".".join((*self.section, *middle, self.name))

    @property
    def head(self) -> str | None:
        """The head this key belongs to, if any."""
        return self.section[1] if self.section[:1] == (HEADS,) else None

    def short(self) -> str:
        """The key for a table column: ``pitch.ordinal.alpha`` for ``heads.pitch.ordinal.alpha``,
        other keys as they are (``train.lr``, ``model.mlp.hidden``)."""
        text = str(self)
        return text.removeprefix(f"{HEADS}.")

    @property
    def is_head_loss(self) -> bool:
        """Whether this is a head's loss switch (``heads.<head>.loss``)."""
        return self.head is not None and self.option is None and self.name == HEAD_LOSS


def head_losses(config: Mapping[str, Any]) -> dict[str, str]:
    """head -> loss name, from a flat trial config, in the config's order."""
    keys = ((FlatKey.parse(key), value) for key, value in config.items())
    return {key.head: str(value) for key, value in keys if key.is_head_loss}


def varied_keys(configs: list[Mapping[str, Any]], *, hidden: tuple[str, ...] = (),
                searched: Collection[str] | None = None) -> list[str]:
    """Sorted keys whose value differs between ``configs`` (a key some lack counts as varied),
    without the heads' loss switches (tables show them as the trials' losses) and ``hidden``.
    With the ``searched`` keys of their space known, a key some lack that has one value wherever
    it is (a parameter the space fixes for one option of a switch) is left out: the switch's
    column says where it applies."""
    keys = sorted({k for config in configs for k in config})
    return [
        key
        for key in keys
        if key not in hidden and not FlatKey.parse(key).is_head_loss
        and len({repr(config.get(key)) for config in configs}) > 1
        and (searched is None or key in searched
             or len({repr(config[key]) for config in configs if key in config}) > 1)
    ]
