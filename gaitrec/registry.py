"""Name -> class registries: one per kind (models, losses, samplers, transforms).

A config names a class by string; the registry turns that string into the class and, when the name is
wrong, says which names exist and which one was probably meant.
"""
from __future__ import annotations

import difflib
from typing import Callable, Iterable

from .errors import ConfigError  # noqa: F401  (re-exported: most modules import it from here)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``name``, or None when nothing is close."""
    name = str(name)  # a YAML key can be null, a number or a boolean
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        return lowered.get(name.lower())
    return matches[0]


class Registry:
    """Maps config names to classes (or factory functions) of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: str | None = None):
        """Decorator: ``@MODELS.register()`` registers a class under its own name."""

        def add(obj):
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> Callable:
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {name!r}")
        if name not in self._entries:
            hint = closest(name, self._entries)
            known = ", ".join(sorted(self._entries))
            did_you_mean = f" Did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{did_you_mean} Known: {known}")
        return self._entries[name]

    def build(self, name: str, **kwargs):
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


MODELS = Registry("model")
LOSSES = Registry("loss")
SAMPLERS = Registry("sampler")
TRANSFORMS = Registry("transform")
