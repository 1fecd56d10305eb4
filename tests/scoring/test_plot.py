"""Figures: heat map labels in any script, and a loss curve only where there is one."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch


@pytest.fixture
def plot():
    """namesmith.scoring.plot, imported by the test that needs it: it imports matplotlib (0.3 s), which every xdist
    worker would otherwise pay for while collecting."""
    from namesmith.scoring import plot

    return plot


def test_labels_fall_back_to_code_points_when_no_font_has_the_glyphs(tmp_path, monkeypatch, caplog, plot):
    monkeypatch.setattr(plot, "_font_charmaps", lambda: [("none.ttf", frozenset(range(128)))])
    labels, font = plot.label_font([".", "a", "ア"])
    assert labels == [".", "a", "U+30A2"] and font is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="namesmith"), warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Glyph missing" warnings would raise here
        plot.plot_heatmap(torch.full((3, 3), 1 / 3), [".", "a", "ア"], tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
    assert sum("code point" in r.message for r in caplog.records) == 1  # said once, not once per glyph


def test_a_font_with_the_glyphs_is_used_when_one_is_installed(monkeypatch, plot):
    fonts = [("latin.ttf", frozenset(range(128))), ("kana.ttf", frozenset(range(128)) | {ord("ア")})]
    monkeypatch.setattr(plot, "_font_charmaps", lambda: fonts)
    labels, font = plot.label_font([".", "ア"])
    assert labels == [".", "ア"] and font.get_file() == "kana.ttf"
