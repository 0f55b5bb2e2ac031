"""The DreamBooth trainer declares its whole state in one place, ``TrainerSetup.__init__``.

A source scan of the trainer's classes: every ``self.<name> = ...`` (plain, augmented, annotated, tuple or starred
target, ``for`` / ``with`` target, ``setattr``) outside ``__init__`` must assign an attribute ``__init__`` declares,
and no method probes for an attribute with ``getattr`` / ``hasattr`` on ``self``. test_dreambooth_training.py checks
the same at run time on a finished run.
"""

from __future__ import annotations

import ast
import inspect

import pytest

from hfvision.training.dreambooth import trainer as trainer_module
from hfvision.training.dreambooth import trainer_setup as trainer_setup_module
from hfvision.training.dreambooth.trainer import DreamBoothTrainer
from hfvision.training.dreambooth.trainer_setup import TrainerSetup


def _class_node(module, name: str) -> ast.ClassDef:
    tree = ast.parse(inspect.getsource(module))
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


def _methods(cls: ast.ClassDef) -> list[ast.FunctionDef]:
    return [node for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _self_attributes(target: ast.AST) -> set[str]:
    """Names ``x`` of every ``self.x`` that ``target`` assigns (through tuples, lists and starred targets)."""
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        return {target.attr}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_self_attributes(t) for t in target.elts))
    if isinstance(target, ast.Starred):
        return _self_attributes(target.value)
    return set()


def _is_self_call(node: ast.AST, functions: tuple[str, ...]) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in functions
        and bool(node.args)
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == "self"
    )


def assigned_attributes(function: ast.AST) -> set[str]:
    """Every attribute of ``self`` that ``function`` sets."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.NamedExpr)):
            targets = [node.target]
        elif isinstance(node, ast.withitem):
            targets = [node.optional_vars] if node.optional_vars is not None else []
        elif _is_self_call(node, ("setattr",)) and isinstance(node.args[1], ast.Constant):
            names.add(node.args[1].value)
            continue
        else:
            continue
        for target in targets:
            names |= _self_attributes(target)
    return names


CLASSES = [(trainer_setup_module, "TrainerSetup"), (trainer_module, "DreamBoothTrainer")]


def declared_attributes() -> set[str]:
    init = next(m for m in _methods(_class_node(trainer_setup_module, "TrainerSetup")) if m.name == "__init__")
    return assigned_attributes(init)


def test_scanner_sees_every_kind_of_assignment():
    source = """
class T:
    def method(self, pairs):
        self.plain = 1
        self.first, (self.second, *self.rest) = 1, (2, 3)
        self.count += 1
        self.typed: int = 0
        for self.item in pairs:
            pass
        with open("f") as self.handle:
            pass
        setattr(self, "dynamic", 1)
        other.attribute = 1
"""
    method = _methods(ast.parse(source).body[0])[0]
    expected = {"plain", "first", "second", "rest", "count", "typed", "item", "handle", "dynamic"}
    assert assigned_attributes(method) == expected


def test_the_trainer_declares_its_state_in_init():
    declared = declared_attributes()
    assert {"config", "accelerator", "prepared_denoiser", "global_step", "quality"} <= declared
    undeclared = [
        f"{name}.{method.name} sets self.{attribute}"
        for module, name in CLASSES
        for method in _methods(_class_node(module, name))
        if method.name != "__init__"
        for attribute in sorted(assigned_attributes(method) - declared)
    ]
    assert not undeclared, "declare these in TrainerSetup.__init__: " + "; ".join(undeclared)


@pytest.mark.parametrize("module, name", CLASSES)
def test_no_attribute_probes_on_self(module, name):
    probes = [
        f"{name}.{method.name} line {node.lineno}"
        for method in _methods(_class_node(module, name))
        for node in ast.walk(method)
        if _is_self_call(node, ("getattr", "hasattr", "delattr"))
    ]
    assert not probes, f"attributes are declared in __init__, so probing them is never needed: {probes}"


def test_the_trainer_has_no_mixins_and_one_init():
    # every class of the trainer reads state that TrainerSetup.__init__ declared: no mixin with implicit attributes
    assert DreamBoothTrainer.__mro__ == (DreamBoothTrainer, TrainerSetup, object)
    assert "__init__" not in vars(DreamBoothTrainer)


def test_the_setup_class_calls_only_its_own_methods():
    # TrainerSetup stands alone: it never reaches into the loop or output steps of its subclass
    cls = _class_node(trainer_setup_module, "TrainerSetup")
    own = {method.name for method in _methods(cls)}
    called = {
        node.func.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    }
    assert called <= own, f"TrainerSetup calls {sorted(called - own)} of its subclass"


def test_the_trainer_modules_hold_no_other_stateful_class():
    # the loop and the quality steps were mixins reading undeclared attributes; what is left besides the two
    # trainer classes are plain records (dataclasses) and functions with explicit inputs
    import dataclasses

    from hfvision.training.dreambooth import preparation, validation

    for module in (trainer_module, trainer_setup_module, preparation, validation):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                assert name in ("TrainerSetup", "DreamBoothTrainer") or dataclasses.is_dataclass(obj), name
