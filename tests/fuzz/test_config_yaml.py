"""config.yaml: every generated file loads into Settings or is refused as one line at
config.yaml:LINE, whatever its bytes, values, aliases or nesting."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from engine import config
from engine.errors import ConfigError
from tests.conftest import ROOT
from tests.fuzz.conftest import TIMEOUT, assert_one_located_line, examples
from tests.fuzz.strategies import mostly, mutated, yaml_values

pytestmark = [pytest.mark.timeout(TIMEOUT), pytest.mark.slow]
SHIPPED = (ROOT / "config.yaml").read_bytes()
SECTIONS = yaml.safe_load(SHIPPED)


@st.composite
def configs(draw) -> bytes:
    """The shipped config.yaml with a value replaced, a key added or removed."""
    document = yaml.safe_load(SHIPPED)
    section = draw(st.sampled_from([*SECTIONS, "surprise"]))
    action = draw(st.integers(0, 2))
    if action == 0 or not isinstance(document.get(section), dict):
        document[section] = draw(yaml_values)
    elif action == 1:
        key = draw(st.sampled_from(sorted(document[section])))
        document[section][key] = draw(yaml_values)
    else:
        document[section].pop(draw(st.sampled_from(sorted(document[section]))), None)
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode()


@given(data=st.one_of(configs(), mutated(SHIPPED)).flatmap(
    lambda data: mostly(st.just(data), mutated(data))),
    environ=st.dictionaries(st.sampled_from(["RETAIN_SMTP_PORT", "RETAIN_SMTP_HOST",
                                             "RETAIN_UNSUBSCRIBE_SECRET"]),
                            st.text(max_size=20), max_size=2))
@examples(ci=150)
def test_config_loads_or_is_refused_at_a_line(tmp_path_factory, data, environ):
    path = tmp_path_factory.getbasetemp() / "fuzz-config.yaml"
    path.write_bytes(data)
    try:
        settings = config.load(path, environ=environ)
    except ConfigError as exc:
        event("refused")
        assert_one_located_line(str(exc), path)
        return
    event("accepted")
    assert settings.store.zone is not None
