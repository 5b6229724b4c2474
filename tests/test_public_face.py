"""zcl looks like one library: one public face, one error root, one logger tree.

- everything in `zcl.__all__` resolves, from the module the face says it lives in;
- every exception class zcl defines is a `ZclError`;
- every logger zcl makes is named for its module, under "zcl", and the root of that tree has a
  NullHandler (a library prints nothing the application did not ask for);
- the face loads each name's module on first use: the node agent, which shares the package,
  starts without the controller side or asyncssh.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import zcl
from zcl.errors import ZclError


def zcl_modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.walk_packages(zcl.__path__, "zcl.")]
    assert "zcl.agent.node_agent" in names  # the walk is the real one
    return [importlib.import_module(name) for name in names]


def test_every_public_name_resolves_to_its_home() -> None:
    assert sorted([*zcl.__all__, *zcl.NEEDS_SSH_EXTRA]) == sorted(zcl._HOME)
    assert dir(zcl) == sorted([*zcl._HOME, "__version__"])  # no helper of the face's own
    for name in zcl.__all__:
        value = getattr(zcl, name)
        home = importlib.import_module(zcl._HOME[name])
        assert value is getattr(home, name), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'ZmqNodeExecuter'"):
        _ = zcl.ZmqNodeExecuter


def test_every_exception_zcl_defines_is_a_zcl_error() -> None:
    defined = {
        obj
        for module in zcl_modules()
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
    }
    assert len(defined) > 20  # the search finds them
    strays = sorted(c.__qualname__ for c in defined if not issubclass(c, ZclError))
    assert strays == []


def test_every_public_exception_is_on_the_face() -> None:
    from zcl import errors  # noqa: PLC0415

    families = {
        n for n, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, ZclError)
    }
    assert families - set(zcl.__all__) == set()


def test_loggers_are_one_tree_named_for_their_modules() -> None:
    loggers = {
        module.__name__: module.log
        for module in zcl_modules()
        if isinstance(getattr(module, "log", None), logging.Logger)
    }
    assert len(loggers) >= 8
    misnamed = {name: log.name for name, log in loggers.items() if log.name != name}
    assert misnamed == {}
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("zcl").handlers)


@pytest.mark.timeout(60)
def test_the_agent_starts_without_the_controller_side() -> None:
    script = (
        "import sys, zcl.agent.node_agent\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('zcl.', 'asyncssh')))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "zcl.agent.node_agent" in loaded
    controller_side = {
        "zcl.zmq_node_executor",
        "zcl.fallback",
        "zcl.zmq_journal",
        "zcl.ssh_context",
    }
    assert loaded & controller_side == set()
    assert not any(name.startswith("asyncssh") for name in loaded)


def test_importing_the_ssh_side_prints_no_warning() -> None:
    """asyncssh 2.24 touches cryptography's DSA names at import, which cryptography 47 and
    later deprecate with a warning on stderr: every CLI that loads the SSH side printed four
    of them before its one-line error (a fresh install met it in CI)."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import zcl.ssh_context"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
