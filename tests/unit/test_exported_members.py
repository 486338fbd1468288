"""The public surface of ``gateway``: what task code imports, kept exactly to ``__all__`` (as httpx's
tests/test_exported_members.py keeps its own)."""

from __future__ import annotations

import types

import gateway


def test_all_is_the_task_api_sorted() -> None:
    assert gateway.__all__ == ["AbortRun", "Context", "RetryAfter", "Task", "task"]
    assert gateway.__all__ == sorted(gateway.__all__)


def test_every_name_in_all_is_an_attribute() -> None:
    assert [name for name in gateway.__all__ if not hasattr(gateway, name)] == []


def test_every_public_attribute_is_in_all() -> None:
    # Submodules become attributes once imported (gateway.errors, gateway.cli, ...): they are not exports.
    public = {
        name
        for name, value in vars(gateway).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(public) == gateway.__all__
