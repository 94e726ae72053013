"""Site rules: rules from outside the package, with the same API, options and error boundary.

Two ways in:

- ``[rules] modules = ["site_rules"]`` in the TOML file: each module is imported (it must be on
  the Python path of every process that runs the analysis);
- the ``dicom_analyzer.rules`` entry-point group of an installed package: each entry point
  names a module, a rule class or a list of rule classes.

A module gives its ``RULES`` list, or else every ``FlowRule``/``CrossFlowRule`` subclass it
defines. Ids must be new (not a built-in rule's, not another site rule's); options come from
``[rules.<id>]`` like ours; a site rule that raises is an ``analyzer_internal_error`` row.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from functools import cache
from types import ModuleType
from typing import Any

from analyzer.errors import ConfigError
from analyzer.findings.catalog import RULES
from analyzer.findings.model import CrossFlowRule, FlowRule, Rule

GROUP = "dicom_analyzer.rules"


def _classes(obj: Any, where: str) -> list[type[Rule]]:
    if isinstance(obj, ModuleType):
        listed = getattr(obj, "RULES", None)
        if listed is not None:
            return _classes(list(listed), where)
        return [
            c
            for _, c in inspect.getmembers(obj, inspect.isclass)
            if issubclass(c, FlowRule | CrossFlowRule)
            and c not in (FlowRule, CrossFlowRule)
            and c.__module__ == obj.__name__
        ]
    if isinstance(obj, list | tuple):
        out = []
        for item in obj:
            out += _classes(item, where)
        return out
    if inspect.isclass(obj) and issubclass(obj, FlowRule | CrossFlowRule):
        return [obj]
    raise ConfigError(f"{where}: not a rule, a list of rules or a module of rules")


@cache
def site_rules(modules: tuple[str, ...]) -> tuple[type[Rule], ...]:
    """The site's rule classes, from ``modules`` and the entry-point group, checked."""
    found: list[type[Rule]] = []
    for name in modules:
        try:
            found += _classes(importlib.import_module(name), f"rules.modules: {name}")
        except ImportError as exc:
            raise ConfigError(f"rules.modules: cannot import {name}: {exc}") from None
    for ep in importlib.metadata.entry_points(group=GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin: one line, not a traceback
            raise ConfigError(
                f"entry point {ep.name} ({GROUP}): {type(exc).__name__}: {exc}"
            ) from None
        found += _classes(obj, f"entry point {ep.name}")
    seen: dict[str, type[Rule]] = {}
    for cls in found:
        if not cls.id or not cls.id.isidentifier() or cls.id != cls.id.lower():
            raise ConfigError(f"site rule {cls.__name__}: its id must be a snake_case name")
        if cls.id in RULES:
            raise ConfigError(f"site rule {cls.id}: a built-in rule has that id")
        if cls.id in seen and seen[cls.id] is not cls:
            raise ConfigError(f"site rule {cls.id}: two site rules have that id")
        seen[cls.id] = cls
    return tuple(seen.values())


def all_rules(modules: tuple[str, ...]) -> dict[str, type[Rule]]:
    """Every rule of a run: ours, then the site's."""
    return {**RULES, **{c.id: c for c in site_rules(modules)}}
