"""YAML with line marks, and the limits that keep a hostile file from hanging or crashing the
loader: each one refused as one line, ``file:line[:column]: message``."""

from __future__ import annotations

import pytest

from engine import yamlfile
from engine.errors import InputError


def refused(text: str | bytes, tmp_path) -> InputError:
    path = tmp_path / "c.yaml"
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    with pytest.raises(InputError) as caught:
        yamlfile.load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    return caught.value


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(30)
def test_an_alias_bomb_is_refused_at_the_alias_that_passes_the_limit(tmp_path):
    error = refused(billion_laughs(), tmp_path)
    # a0 to a3 are 12,348 values with their keys; the first *a3 in a4 adds 11,111.
    assert (error.line, error.column) == (5, 10)
    assert 'the alias "*a3" repeats so much' in error.message
    assert f"more than {yamlfile.MAX_NODES:,} values" in error.message


@pytest.mark.timeout(30)
def test_an_alias_bomb_inside_a_segment_is_refused_too(tmp_path):
    text = ("segment:\n  all:\n    - {all: &a0 [{orders: 1}, {orders: 2}]}\n" + "".join(
        f"    - {{all: &a{i} [" + ", ".join([f"{{all: *a{i - 1}}}"] * 8) + "]}\n"
        for i in range(1, 12)))
    error = refused(text, tmp_path)
    assert "repeats so much" in error.message and error.line < 12


def test_aliases_that_stay_small_load_and_keep_their_lines(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("coupon: &c {percent_off: 10}\nsteps:\n  - {tier: drowsy, coupon: *c}\n"
                    "  - {tier: sleeping, coupon: *c}\n")
    data = yamlfile.load(path)
    assert data["steps"][1]["coupon"] == {"percent_off": 10}
    assert data["steps"].lines[1] == (4, 5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text, line", [
    ("x: " + "[" * 500 + "]" * 500 + "\n", 1),
    # The key k{n} on line n + 1 is at depth n + 2.
    ("a:\n" + "".join("  " * n + f"k{n}:\n" for n in range(1, 60)) + "  " * 60 + "v: 1\n",
     yamlfile.MAX_DEPTH),
])
def test_nesting_deeper_than_the_limit_is_refused_not_a_recursion_error(tmp_path, text, line):
    error = refused(text, tmp_path)
    assert error.line == line
    assert f"nested more than {yamlfile.MAX_DEPTH} levels deep" in error.message


def test_nesting_at_the_limit_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("[" * yamlfile.MAX_DEPTH + "]" * yamlfile.MAX_DEPTH + "\n")
    assert yamlfile.load(path) is not None


@pytest.mark.parametrize("text, line, column", [
    ("segment:\n  ? [a, b]\n  : 1\n", 2, 5),
    ("segment: {[a]: 1}\n", 1, 11),
    ("a: 1\n? {x: 1}\n: 2\n", 2, 3),
])
def test_a_list_or_mapping_as_a_key_is_refused_at_the_key(tmp_path, text, line, column):
    error = refused(text, tmp_path)
    assert (error.line, error.column) == (line, column)
    assert "a key must be a name, not a list or a mapping" in error.message


@pytest.mark.parametrize("data, line, column, message", [
    (b"id: c\nkind: winback\nsubject: H\x00llo\n", 3, 11, "U+0000 (NUL) is not allowed"),
    (b"id: c\n\x1b[2Jkind: winback\n", 2, 1, "U+001B is not allowed"),
    (b"id: c\nsubject: H\xe9llo\n", 2, 11, "not UTF-8 text (byte 0xe9"),
    ("id: c\n".encode("utf-16"), 1, None, "saved as UTF-16; save it as UTF-8"),
    (b"id: c\ndescription: 2025-02-30\n", 2, 14, "cannot read the value '2025-02-30'"),
    (b"id: !!python/object:os.system c\n", 1, 5, "the tag !!python/object:os.system is not "
     "allowed here"),
    (b"id: &a [*a]\n", 1, 5, "this value contains itself"),
    (b"id: *nowhere\n", 1, 5, '"*nowhere" names no anchor above it'),
    (b"---\nid: a\n---\nid: b\n", 3, 1, "a second document (after a line ---)"),
])
def test_bytes_and_values_yaml_cannot_take_are_refused_at_their_line(
        tmp_path, data, line, column, message):
    error = refused(data, tmp_path)
    assert (error.line, error.column) == (line, column)
    assert message in error.message


def test_a_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfid: c\n")
    assert yamlfile.load(path) == {"id": "c"}


def test_a_file_larger_than_the_limit_is_refused_where_it_passes_it(tmp_path):
    line = "# " + "x" * 97 + "\n"  # 100 bytes
    text = line * (yamlfile.MAX_BYTES // 100 + 10)
    error = refused(text, tmp_path)
    assert error.line == yamlfile.MAX_BYTES // 100 + 1
    assert f"larger than {yamlfile.MAX_BYTES // 1024} KiB" in error.message


def test_on_off_yes_no_as_keys_are_names_not_true_and_false(tmp_path):
    """A flow step's ``on: shipped`` is a key named "on": YAML 1.1 would read it as true."""
    path = tmp_path / "steps.yaml"
    path.write_text("steps:\n  - {on: shipped, template: shipped.html}\n  - yes: 1\n    off: 2\n")
    loaded = yamlfile.load(path)
    assert loaded["steps"][0]["on"] == "shipped"
    assert set(loaded["steps"][1]) == {"yes", "off"}
