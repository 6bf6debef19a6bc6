"""The README's settings table lists every ``Settings`` field, as the generator renders it."""

from __future__ import annotations

from pathlib import Path

from crown_nexus._settings_doc import BEGIN, END, env_names, render_table
from crown_nexus.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _table() -> str:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README lost its settings table markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_every_setting_has_a_row() -> None:
    """Each field's environment variable appears in the README table."""
    table = _table()
    missing = [
        name
        for name, field in Settings.model_fields.items()
        if f"`{env_names(name, field)[0]}`" not in table
    ]
    assert not missing, f"settings missing from the README table: {missing}"


def test_readme_table_is_current() -> None:
    """The table is what the generator renders now (run `python -m crown_nexus._settings_doc
    --write README.md` after changing a setting)."""
    assert _table().strip() == render_table().strip()
