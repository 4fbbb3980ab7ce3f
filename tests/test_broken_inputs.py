"""A corpus of broken campaign, template, config, segment and CSV files: each is refused with its
file, line (row and column for CSV) and a sentence a marketer understands, as one line, and
nothing is written to the database or sent.

Each YAML or template file starts with ``# expect: LINE[:COLUMN] message`` (``{# ... #}`` in
templates; the first line is read even when the rest of the file is not UTF-8); CSV files are
listed in CSV_EXPECTED below. The test copies the repository's project into a temporary folder,
puts the broken file in place and runs the real commands. Hostile files (alias bombs, nesting
500 deep) must be refused within the test's timeout, never hang.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import BACKENDS, fresh_postgres

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "data" / "broken"
EXPECT = re.compile(r"^# expect: (\d+)(?::(\d+))? (.+)$")


def first_line(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16").splitlines()[0]
    return data.split(b"\n", 1)[0].decode("utf-8", errors="replace")


def expectation(path: Path) -> tuple[int, int | None, str]:
    first = first_line(path)
    match = EXPECT.match(first)
    assert match, f"{path} must start with '# expect: LINE[:COL] message'"
    return int(match[1]), int(match[2]) if match[2] else None, match[3]


def make_project(tmp_path: Path) -> Path:
    for folder in ("templates",):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "campaigns").mkdir()
    text = (ROOT / "config.yaml").read_text().replace("sqlite:///retain.db", "sqlite:///shop.db")
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


def invoke(project: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(project / "config.yaml"), *args])


def assert_located(output: str, path: Path, line: int, column: int | None, message: str):
    assert "Traceback" not in output
    # Every line printed is a located problem or the closing count: no message runs over lines.
    for row in output.splitlines():
        assert row.startswith(str(path.parent.parent)) or row.startswith("error: "), row
    where = f"{path}:{line}:" if column is None else f"{path}:{line}:{column}:"
    matching = [row for row in output.splitlines() if row.startswith(where)]
    assert matching, f"expected a problem at {where} in:\n{output}"
    assert any(message in row for row in matching), f"expected {message!r} in {matching}"


CAMPAIGNS = sorted((CORPUS / "campaigns").glob("*.yaml"))


def test_corpus_is_large_enough():
    everything = [p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in
                  (".yaml", ".html", ".csv")]
    assert len(everything) >= 80


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broken", CAMPAIGNS, ids=lambda p: p.stem)
def test_broken_campaign_is_refused_with_its_location(tmp_path, broken):
    project = make_project(tmp_path)
    target = project / "campaigns" / broken.name
    shutil.copy(broken, target)
    line, column, message = expectation(broken)
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert_located(result.output, target, line, column, message)
    # The same mistake stops a run before anything is written or sent.
    run = invoke(project, "run")
    assert run.exit_code == 1
    assert not (project / "shop.db").exists()


# Words of the libraries underneath, which a marketer should never have to read.
LIBRARY_WORDS = ("Input should", "while parsing", "while scanning", "Keys should be",
                 "<block end>", "<scalar>", "String should", "Decimal input", "valid decimal",
                 "Value error", "pydantic", "Tuple should", "instance of", "dict object",
                 "could not find expected", "that cannot start any token", "MarkedYAMLError")


def test_every_campaign_problem_is_one_line_in_the_marketers_words(tmp_path):
    project = make_project(tmp_path)
    for broken in CAMPAIGNS:
        shutil.copy(broken, project / "campaigns" / broken.name)
    result = invoke(project, "validate")
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith(str(project))]
    assert len(problems) >= len(CAMPAIGNS)
    for line in result.output.splitlines():
        assert not any(word in line for word in LIBRARY_WORDS), line
    for broken in CAMPAIGNS:
        assert sum(line.startswith(f"{project / 'campaigns' / broken.name}:")
                   for line in problems) >= 1, broken.name


TEMPLATES = sorted((CORPUS / "templates").glob("*.html"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broken", TEMPLATES, ids=lambda p: p.stem)
def test_broken_template_is_refused_with_its_location(tmp_path, broken):
    project = make_project(tmp_path)
    kind, _ = broken.stem.split("__")
    target = project / "templates" / broken.name
    shutil.copy(broken, target)
    (project / "campaigns" / "c.yaml").write_text(
        f"id: c\nkind: {kind}\ntemplate: {broken.name}\nsubject: Hello\n" +
        {"winback": "steps: [{tier: drowsy, coupon: {percent_off: 10}}]\n",
         "new_product": ""}[kind])
    line, _, message = expectation_of_template(broken)
    result = invoke(project, "validate")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert_located(result.output, target, line, None, message)
    assert invoke(project, "run").exit_code == 1
    assert not (project / "shop.db").exists()


def expectation_of_template(path: Path) -> tuple[int, None, str]:
    match = re.match(r"^\{# expect: (\d+) ?(.*?) ?#\}$", first_line(path))
    assert match, f"{path} must start with '{{# expect: LINE message #}}'"
    return int(match[1]), None, match[2]


CONFIGS = sorted((CORPUS / "config").glob("*.yaml"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broken", CONFIGS, ids=lambda p: p.stem)
def test_broken_config_is_refused_with_its_location(tmp_path, broken, monkeypatch):
    monkeypatch.delenv("SHOP_SMTP_SECRET_FOR_TEST", raising=False)
    project = make_project(tmp_path)
    shutil.copy(broken, project / "config.yaml")
    line, _, message = expectation(broken)
    for command in (["validate"], ["run"], ["segment", str(project / "config.yaml")]):
        result = invoke(project, *command)
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert f"{project / 'config.yaml'}:{line}: " in result.output, result.output
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not list(project.glob("*.db"))


SEGMENTS = sorted((CORPUS / "segments").glob("*.yaml"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broken", SEGMENTS, ids=lambda p: p.stem)
def test_broken_segment_file_is_refused_with_its_location(tmp_path, broken):
    project = make_project(tmp_path)
    target = project / "segments" / broken.name
    target.parent.mkdir()
    shutil.copy(broken, target)
    line, column, message = expectation(broken)
    result = invoke(project, "segment", str(target))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert_located(result.output.replace("error: ", "", 1), target, line, column, message)
    assert not (project / "shop.db").exists()


# file: (row, column, message). The customers of CSV_SHOP are imported first; the broken file
# must then change nothing, on either database.
CSV_EXPECTED = {
    "customers__created_in_year_one.csv": (3, "created_at", "is not a date between 1900 and"),
    "customers__not_utf8.csv": (3, "first_name", "the file is not UTF-8 text (byte 0xe9"),
    # A NUL in a name is cleaned when written (row 3); anywhere else it refuses the row.
    "customers__nul_byte.csv": (4, "country", "holds a NUL character"),
    "customers__unclosed_quote_in_name.csv": (3, "first_name", "a quote opens here and closes "
                                              "only 2 line(s) further down"),
    "orders__amount_too_large.csv": (3, "total", "is more than 10,000,000.00, the largest"),
    "orders__quantity_too_large.csv": (2, "quantity", "is more than 100,000, the largest"),
    "orders__text_after_quote.csv": (3, "customer_id", "text follows a closing quote"),
    "orders__unclosed_quote_swallows_rows.csv": (3, "discount_code", "a quote opens here and "
                                                 "closes only 3 line(s) further down"),
    "orders__unclosed_quote_to_the_end.csv": (4, "status", "a quote opens here and is never "
                                              "closed"),
    "orders__unit_price_too_large.csv": (3, "unit_price", "is more than 10,000,000.00"),
    "orders__year_one.csv": (2, "created_at", '"0001-01-01" is not a date between 1900 and 2999'),
    "orders__year_9999.csv": (3, "created_at", "is not a date between 1900 and 2999"),
    "products__compare_at_price_too_large.csv": (2, "compare_at_price", "is more than"),
    "products__price_too_large.csv": (3, "price", '"99999999999999999999999" is more than'),
}
CSV_SHOP = "customer_id,email,first_name\nC1,ann@example.com,Ann\nC2,bob@example.com,Bob\n"


def test_every_broken_csv_has_an_expectation():
    assert sorted(p.name for p in (CORPUS / "csv").glob("*.csv")) == sorted(CSV_EXPECTED)


def row_counts(engine) -> dict[str, int]:
    from sqlalchemy import func, select

    from engine import tables

    with engine.connect() as conn:
        return {table.__tablename__: conn.execute(
            select(func.count()).select_from(table.__table__)).scalar()
            for table in (tables.Customer, tables.Product, tables.Order, tables.OrderItem)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CSV_EXPECTED))
def test_broken_csv_is_refused_at_its_row_and_column_and_writes_nothing(
        tmp_path, engine, backend, name):
    target = fresh_postgres("broken CSV") if backend == "postgres" else engine
    url = target.url.render_as_string(hide_password=False)
    project = make_project(tmp_path)
    shop = tmp_path / "customers.csv"
    shop.write_text(CSV_SHOP)
    assert invoke(project, "--db", url, "import", "customers", str(shop)).exit_code == 0
    before = row_counts(target)
    broken = tmp_path / name
    shutil.copy(CORPUS / "csv" / name, broken)
    row, column, message = CSV_EXPECTED[name]
    result = invoke(project, "--db", url, "import", name.split("__")[0], str(broken))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {broken}: row {row}: column '{column}': "), line
    assert message in line
    assert row_counts(target) == before
    if target is not engine:
        target.dispose()


def test_subject_with_unknown_variable_points_at_the_subject_line(tmp_path):
    project = make_project(tmp_path)
    target = project / "campaigns" / "c.yaml"
    target.write_text("id: c\nkind: winback\ntemplate: winback.html\n"
                      "subject: '{{ custome.first_name }}, come back'\n"
                      "steps: [{tier: drowsy, coupon: {percent_off: 10}}]\n")
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert_located(result.output, target, 4, None, 'unknown variable "custome"')


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    project = make_project(tmp_path)
    for name in ("unknown_key.yaml", "bad_cron.yaml", "bad_tier.yaml"):
        shutil.copy(CORPUS / "campaigns" / name, project / "campaigns" / name)
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert "3 problems found" in result.output


def test_templates_of_good_campaigns_are_checked_beside_a_broken_file(tmp_path):
    project = make_project(tmp_path)
    shutil.copy(CORPUS / "campaigns" / "nul_byte.yaml", project / "campaigns")
    shutil.copy(CORPUS / "templates" / "winback__recursive_macro.html", project / "templates")
    (project / "campaigns" / "good.yaml").write_text(
        "id: good\nkind: winback\ntemplate: winback__recursive_macro.html\nsubject: Hi\n"
        "steps: [{tier: drowsy, coupon: {percent_off: 10}}]\n")
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert_located(result.output, project / "campaigns" / "nul_byte.yaml", 5, 16, "NUL")
    assert_located(result.output, project / "templates" / "winback__recursive_macro.html", 4,
                   None, "calls itself without end")
