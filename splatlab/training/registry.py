"""The method registry: strategies, appearances and fields by name, from entry points.

Everything a run's ``config.json`` names (``train.strategy``, ``train.appearance``,
``train.fields``) is resolved here, from the ``splatlab.methods`` entry-point group — built-ins are
registered the same way in splatlab's own pyproject.toml, so a third party adds a method by
installing a package (``[project.entry-points."splatlab.methods"] name = "pkg.module:Class"``).

``--method`` is a shortcut: the name of a strategy (``3dgs``, ``mcmc``: SH colour) or of an
appearance (``gaussianshader``: with 3dgs densification). :func:`resolve` turns a TrainConfig into
the (strategy, appearance, fields) it trains with and refuses a combination an extension declares
incompatible, before any training starts.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ..errors import SplatlabError

__all__ = [
    "ENTRY_POINT_GROUP",
    "MethodError",
    "Components",
    "registered",
    "get",
    "names",
    "resolve",
]

ENTRY_POINT_GROUP = "splatlab.methods"
KINDS = ("strategy", "appearance", "field")


class MethodError(SplatlabError, ValueError):
    """An unknown method name or a combination of extensions that cannot train together."""


def _load(target: str) -> Any:
    mod, _, attr = target.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@functools.lru_cache(maxsize=1)
def registered() -> dict[str, dict[str, Any]]:
    """kind -> name -> class, for every ``splatlab.methods`` entry point (loaded once)."""
    out: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = _load(ep.value)
        kind = getattr(cls, "kind", None)
        if kind not in KINDS:
            raise MethodError(f"entry point {ep.name} = {ep.value}: kind must be one of {KINDS}, got {kind!r}")
        name = getattr(cls, "name", "") or ep.name
        if name in out[kind] and out[kind][name] is not cls:
            raise MethodError(f"two {kind}s are registered as {name!r}: {out[kind][name]} and {cls}")
        out[kind][name] = cls
    if not out["strategy"] or not out["appearance"]:
        raise MethodError(
            "no training strategies / appearances are registered (entry-point group "
            f"{ENTRY_POINT_GROUP!r}); reinstall splatlab: pip install -e ."
        )
    return out


def names(kind: str) -> list[str]:
    """Registered names of one kind."""
    return sorted(registered()[kind])


def get(kind: str, name: str) -> Any:
    """The registered class of ``kind`` called ``name`` (MethodError listing the choices)."""
    reg = registered()[kind]
    if name not in reg:
        raise MethodError(f"unknown {kind} {name!r}; registered: {', '.join(sorted(reg)) or 'none'}")
    return reg[name]


def extension_classes() -> list[Any]:
    """Every registered appearance and field class (for config sections and stored scenes)."""
    reg = registered()
    return [*reg["appearance"].values(), *reg["field"].values()]


@dataclass
class Components:
    """What a TrainConfig resolves to."""

    strategy: str
    appearance: str
    fields: tuple[str, ...]

    def describe(self) -> str:
        f = " + ".join(self.fields)
        return f"strategy {self.strategy!r}, appearance {self.appearance!r}" + (f", fields {f}" if f else "")


def resolve(cfg: Any) -> Components:
    """(strategy, appearance, fields) of a TrainConfig: ``cfg.strategy`` / ``cfg.appearance`` when
    set, else from the ``cfg.method`` shortcut. Raises MethodError for unknown names and for
    combinations any member declares ``incompatible``."""
    reg = registered()
    method = cfg.method
    if method not in reg["strategy"] and method not in reg["appearance"]:
        raise MethodError(
            f"--method {method!r} is neither a strategy ({', '.join(sorted(reg['strategy']))}) "
            f"nor an appearance ({', '.join(sorted(reg['appearance']))})"
        )
    strategy = cfg.strategy or (method if method in reg["strategy"] else "3dgs")
    appearance = cfg.appearance or (method if method in reg["appearance"] else "sh")
    fields = tuple(dict.fromkeys(cfg.fields))
    get("strategy", strategy)
    get("appearance", appearance)
    for f in fields:
        get("field", f)
    comp = Components(strategy, appearance, fields)
    members = [("strategy", strategy), ("appearance", appearance), *(("field", f) for f in fields)]
    all_names = {n for _, n in members}
    for kind, name in members:
        bad = set(getattr(get(kind, name), "incompatible", ())) & (all_names - {name})
        if bad:
            raise MethodError(
                f"{kind} {name!r} cannot be combined with {', '.join(sorted(bad))} "
                f"({comp.describe()}); choose another combination"
            )
    return comp
