"""lwdpo_edge/publish.py: the final name only ever holds one complete version."""

from __future__ import annotations

import os

import pytest

from lwdpo_edge.publish import publish, publish_once


def folder(path, text):
    path.mkdir()
    (path / "data.txt").write_text(text)
    return path


def test_publish_replaces_an_earlier_folder_and_leaves_no_temporary(tmp_path):
    final = folder(tmp_path / "report", "old")
    publish(folder(tmp_path / ".report.tmp", "new"), final)
    assert (final / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_publish_puts_the_earlier_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    final = folder(tmp_path / "report", "old")
    staged = folder(tmp_path / ".report.tmp", "new")
    real_replace = os.replace

    def fail_on_the_swap(src, dst):
        if os.fspath(src) == os.fspath(staged):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_the_swap)
    with pytest.raises(OSError, match="disk full"):
        publish(staged, final)
    assert (final / "data.txt").read_text() == "old"


def test_publish_once_keeps_the_entry_that_won_the_race(tmp_path):
    final = folder(tmp_path / "entry", "first")
    (final / "config.json").write_text("{}")
    late = folder(tmp_path / ".entry.tmp", "second")
    assert publish_once(late, final, complete=lambda f: (f / "config.json").is_file()) == final
    assert (final / "data.txt").read_text() == "first"
    incomplete = folder(tmp_path / "broken", "half")  # no config.json: not complete, so the error stands
    with pytest.raises(OSError):
        publish_once(late, incomplete, complete=lambda f: (f / "config.json").is_file())
