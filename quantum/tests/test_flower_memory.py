"""Flower under `make run` keeps a bounded task history (its memory stops growing there)."""

from __future__ import annotations

from quantum.management.commands.runplatform import FLOWER_MAX_TASKS, flower_env


def test_flower_is_told_to_keep_ten_thousand_tasks_not_its_default_hundred_thousand(
    monkeypatch,
) -> None:
    monkeypatch.delenv("FLOWER_MAX_TASKS", raising=False)
    env = flower_env()
    assert env["FLOWER_MAX_TASKS"] == str(FLOWER_MAX_TASKS) == "10000"

    # Flower itself reads it (FLOWER_* environment options) into its max_tasks bound.
    from flower.command import apply_env_options
    from flower.options import options

    before = options.max_tasks
    monkeypatch.setattr("os.environ", env)
    try:
        apply_env_options()
        assert options.max_tasks == 10000
    finally:
        options.max_tasks = before


def test_an_operator_may_set_another_flower_bound(monkeypatch) -> None:
    monkeypatch.setenv("FLOWER_MAX_TASKS", "2000")
    assert flower_env()["FLOWER_MAX_TASKS"] == "2000"
