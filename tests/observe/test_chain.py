"""The hash chain over exports: an entry's hash survives the trip through CSV and JSON Lines whatever its
cells hold (commas, quotes, newlines, unicode, floats, nulls), and any change to a cell breaks it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.observe.chain import REQUEST_FIELDS, csv_lines, jsonl_lines, link, read_export, verify

values = st.one_of(st.none(), st.text(max_size=30), st.integers(-10**12, 10**12),
                   st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda f: round(f, 6)))
entries = st.lists(st.fixed_dictionaries({name: values for name in REQUEST_FIELDS}), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(entries)
def test_an_export_verifies_in_both_formats_and_an_edited_cell_fails(rows):
    link("requests", 0, "0" * 64, rows)
    for text in ("".join(csv_lines("requests", rows)), "".join(jsonl_lines("requests", rows))):
        log, read = read_export(text)
        assert log == "requests" and verify(log, read).ok
        read[0]["person"] = f"{read[0].get('person') or ''}x"
        assert not verify(log, read).ok


def test_an_export_of_another_log_or_junk_is_refused():
    import pytest

    with pytest.raises(ValueError):
        read_export("name,age\nbob,3\n")
    rows = [{"time": "t", "actor": "admin key from 127.0.0.1", "via": "api", "action": "user.add", "target": "a",
             "details": None}]
    link("audit", 0, "0" * 64, rows)
    log, read = read_export("".join(csv_lines("audit", rows)))
    assert log == "audit" and verify("audit", read).ok and not verify("requests", read).ok
