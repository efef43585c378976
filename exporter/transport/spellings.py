"""Old option spellings accepted for one release, with a deprecation warning.

A model that renamed options derives from `RenamedOptions` and lists
`renamed = {"old": "new"}`; a dotted new name moves a flat option into a block
(`{"ca_file": "tls.ca_file"}`). Loading renames the old keys (both spellings at once is an
error) and remembers which old ones were used; `deprecation_warnings(config)` walks a
loaded configuration and says, per use, which option to write instead. `validate` and
`check` print those warnings, `serve` logs them (see `exporter.lint`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from exporter.model import walk_options

__all__ = ["RenamedOptions", "deprecation_warnings"]


class RenamedOptions(BaseModel):
    """Base of models that still accept options under their old names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    renamed: ClassVar[dict[str, str]] = {}
    """old option name -> new option name (the old one is accepted for one release)."""

    _old_spellings: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _rename_old_spellings(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        used: list[str] = []
        if isinstance(data, dict) and cls.renamed:
            data = dict(data)
            for old, new in cls.renamed.items():
                if old in data:
                    _move(data, old, new)
                    used.append(old)
        model = handler(data)
        if used and isinstance(model, RenamedOptions):
            model.note_old_spellings(used)
        return model

    def note_old_spellings(self, used: Iterable[str]) -> None:
        """Record old option names this instance was loaded with (called while validating)."""
        self._old_spellings = (*self._old_spellings, *used)

    def old_spellings(self) -> list[tuple[str, str]]:
        """(old, new) for every old option name this instance was loaded with."""
        return [(old, self.renamed[old]) for old in self._old_spellings]


def _move(data: dict[str, Any], old: str, new: str) -> None:
    *blocks, last = new.split(".")
    target = data
    for block in blocks:
        inner = target.get(block)
        if inner is None:
            inner = {}
        elif not isinstance(inner, dict):
            raise ValueError(f"{old} is the old spelling of {new}: write only {new}")
        target[block] = inner = dict(inner)
        target = inner
    if last in target:
        raise ValueError(f"{old} is the old spelling of {new}: write only {new}")
    target[last] = data.pop(old)


def deprecation_warnings(value: Any, path: str) -> list[str]:
    """One warning per old option spelling used anywhere inside `value` (a model)."""
    found: list[str] = []
    for where, model in walk_options(value, path):
        if not isinstance(model, RenamedOptions):
            continue
        for old, new in model.old_spellings():
            found.append(f"{where}.{old} is deprecated: write {where}.{new} (the old name "
                         "is accepted until the next release)")
    return found
