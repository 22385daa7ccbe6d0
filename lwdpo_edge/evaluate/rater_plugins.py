"""Raters given on the command line: `lwdpo-edge eval RUN --rater OBJECTIVE=TARGET` (repeatable).

TARGET is `module.path:name` (a module importable from sys.path) or `path/to/file.py:name` (a local
file). The object it names is either

    a Rater (lwdpo_edge/raters.py): a `name` and `score(prompts, answers) -> list[float]`; a class of
        one is instantiated with no arguments;
    a function f(prompt: str, answer: str) -> float, called once per answer (`FunctionRater`).

Higher is better, as for the built-in raters. A given rater replaces the built-in one of its objective;
the objective must be one the run was trained on. Everything but the scores themselves is checked
before the model loads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from lwdpo_edge.raters import Rater

EXPECTED = ("expected OBJECTIVE=module.path:callable (a module importable from sys.path) or "
            "OBJECTIVE=path/to/file.py:callable, naming a Rater (.name and .score(prompts, answers) -> list[float]) "
            "or a function f(prompt: str, answer: str) -> float")


class RaterError(ValueError):
    """A --rater that cannot be used, or a given rater that returned something other than a number."""


@dataclass(frozen=True)
class RaterSpec:
    text: str  # as given: OBJECTIVE=TARGET
    objective: str
    module: str  # dotted module path or a .py file
    attribute: str

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attribute}"


def parse_rater_spec(text: str) -> RaterSpec:
    objective, _, target = text.partition("=")
    module, _, attribute = target.rpartition(":")  # rpartition: a Windows path keeps its drive letter
    if not (objective.strip() and module.strip() and attribute.strip()):
        raise RaterError(f"--rater {text!r}: {EXPECTED}")
    return RaterSpec(text, objective.strip(), module.strip(), attribute.strip())


def check_objectives(specs: Sequence[RaterSpec], objectives: Sequence[str]) -> None:
    """Every given rater is for an objective of the run, and for a different one."""
    seen = set()
    for spec in specs:
        if spec.objective not in objectives:
            raise RaterError(f"--rater {spec.text}: the run has no objective {spec.objective!r} "
                             f"(its objectives: {', '.join(objectives)})")
        if spec.objective in seen:
            raise RaterError(f"--rater {spec.text}: objective {spec.objective!r} is given a rater twice")
        seen.add(spec.objective)


def import_file(path: Path) -> ModuleType:
    """Import a .py file as a module of its own (a name derived from its absolute path: loaded once)."""
    path = path.resolve()
    name = "lwdpo_rater_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before running it, as import does (dataclasses and pickling look it up)
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_target_module(spec: RaterSpec) -> ModuleType:
    if spec.module.endswith(".py") and not Path(spec.module).is_file():
        raise RaterError(f"--rater {spec.text}: no file {spec.module}; {EXPECTED}")
    try:
        return import_file(Path(spec.module)) if spec.module.endswith(".py") else importlib.import_module(spec.module)
    except (ImportError, SyntaxError) as err:
        hint = "" if spec.module.endswith(".py") else " (for a local file give its path: path/to/file.py:callable)"
        raise RaterError(f"--rater {spec.text}: cannot import {spec.module}: {type(err).__name__}: {err}{hint}; "
                         f"{EXPECTED}") from None


def load_target(spec: RaterSpec) -> object:
    module = import_target_module(spec)
    if not hasattr(module, spec.attribute):
        raise RaterError(f"--rater {spec.text}: {spec.module} has no attribute {spec.attribute!r}; {EXPECTED}")
    return getattr(module, spec.attribute)


def instantiate(cls: type, spec: RaterSpec) -> object:
    """A Rater class given by name: its instance, made with no arguments."""
    try:
        return cls()
    except TypeError as err:
        raise RaterError(f"--rater {spec.text}: cannot make {spec.target}() with no arguments ({err}); "
                         f"{EXPECTED}") from None


def check_two_arguments(fn: Callable, spec: RaterSpec) -> None:
    """fn can be called as fn(prompt, answer); builtins without a signature are given the benefit of the doubt."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind("prompt", "answer")
    except TypeError:
        raise RaterError(f"--rater {spec.text}: {spec.target}{signature} cannot be called as f(prompt, answer); "
                         f"{EXPECTED}") from None


def as_rater(obj: object, spec: RaterSpec) -> Rater:
    """The given object as a Rater: itself, an instance of it (a class), or a FunctionRater around it."""
    if inspect.isclass(obj):
        obj = instantiate(obj, spec)
    if isinstance(obj, Rater):
        return obj
    if not callable(obj):
        raise RaterError(f"--rater {spec.text}: {spec.target} is a {type(obj).__name__}, not callable; {EXPECTED}")
    check_two_arguments(obj, spec)
    return FunctionRater(spec.objective, obj, spec.text)


class FunctionRater:
    """A Rater around f(prompt, answer) -> float: one call per answer, the value kept as f returns it."""

    def __init__(self, name: str, fn: Callable[[str, str], float], source: str):
        self.name, self.fn, self.source = name, fn, source

    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        if len(prompts) != len(answers):
            raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers; they must pair up")
        return [self.number(self.fn(p, a), a) for p, a in zip(prompts, answers)]

    def number(self, value: object, answer: str) -> float:
        """value as a finite float, or a RaterError naming the rater and the answer it was given."""
        try:
            number = None if isinstance(value, (str, bytes)) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number):
            raise RaterError(f"--rater {self.source}: returned {value!r} ({type(value).__name__}) for the answer "
                             f"{answer[:60]!r}; expected a finite number")
        return number


def load_raters(texts: Sequence[str], objectives: Sequence[str]) -> dict[str, Rater]:
    """{objective: Rater} for the --rater options `texts`, checked against the run's objectives."""
    specs = [parse_rater_spec(text) for text in texts]
    check_objectives(specs, objectives)
    return {spec.objective: as_rater(load_target(spec), spec) for spec in specs}
