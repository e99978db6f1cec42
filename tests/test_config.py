"""Config validation: every mistake is one line naming the key and what is accepted."""

import json

import pytest

from fivesigma.core.config import config_schema, load_config, parse_config
from fivesigma.errors import ConfigError
from fivesigma.tasks.classify.config import RunConfig
from fivesigma.tasks.classify.task import ClassifyTask

MINIMAL = """
version: 1
data:
  samples:
    - {name: sig, files: sig.root, label: 1}
    - {name: bkg, files: [bkg_*.root], label: 0, weight: "w * 2"}
  features: [x]
"""


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_minimal_config_gets_defaults_and_relative_base_dir(tmp_path):
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.seed == 42
    assert cfg.data.samples[0].files == ["sig.root"]  # a single string becomes a list
    assert cfg.data.samples[0].tree == "Events"
    assert cfg.data.split.train == pytest.approx(0.6)
    assert cfg.resolve("sig.root") == tmp_path.resolve() / "sig.root"
    assert cfg.resolve("/abs/x.root").as_posix() == "/abs/x.root"


def test_unknown_key_names_path_and_accepted_keys(tmp_path):
    p = _write(tmp_path, MINIMAL.replace("features:", "featres:"))
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "data.featres: unknown key" in msg
    assert "samples" in msg and "features" in msg and "nan_policy" in msg
    assert "\n" not in msg


def test_unknown_key_inside_a_list_item(tmp_path):
    p = _write(tmp_path, MINIMAL.replace("label: 1}", "label: 1, treee: T}"))
    with pytest.raises(
        ConfigError,
        match=r"data\.samples\[0\]\.treee: unknown key; accepted keys: name, files, tree",
    ):
        load_config(p)


def test_wrong_type_names_key_and_value(tmp_path):
    p = _write(tmp_path, MINIMAL.replace("label: 1}", "label: signal}"))
    with pytest.raises(ConfigError, match=r"data\.samples\[0\]\.label: .*integer.*'signal'"):
        load_config(p)


def test_missing_required_key(tmp_path):
    p = _write(tmp_path, MINIMAL.replace(", label: 0", ""))
    with pytest.raises(ConfigError, match=r"data\.samples\[1\]\.label: required key is missing"):
        load_config(p)


def test_bad_values_are_explained(tmp_path):
    p = _write(tmp_path, MINIMAL + "  split: {train: 0.9, validation: 0.2, test: 0.2}\n")
    with pytest.raises(ConfigError, match="train \\+ validation \\+ test must be 1, got 1.3"):
        load_config(p)
    p = _write(tmp_path, MINIMAL + "  nan_policy: ignore\n")
    with pytest.raises(ConfigError, match="nan_policy: Input should be 'error', 'drop' or 'keep'"):
        load_config(p)
    dup = MINIMAL.replace("name: bkg", "name: sig")
    with pytest.raises(ConfigError, match="sample names must be unique, repeated: sig"):
        load_config(_write(tmp_path, dup))


def test_version_is_required_and_checked(tmp_path):
    with pytest.raises(ConfigError, match="missing 'version:'"):
        load_config(_write(tmp_path, MINIMAL.replace("version: 1", "")))
    with pytest.raises(ConfigError, match="version 7 is not supported"):
        load_config(_write(tmp_path, MINIMAL.replace("version: 1", "version: 7")))


def test_missing_file_bad_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML"):
        load_config(_write(tmp_path, "version: 1\ndata: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_many_problems_report_the_first_and_count_the_rest():
    raw = {"version": 1, "data": {"samples": [{"name": "a"}]}, "bogus": 1}
    with pytest.raises(ConfigError, match=r"and \d+ more problems"):
        parse_config(raw)


def test_schema_is_a_union_of_every_task_discriminated_by_task():
    schema = json.loads(config_schema())
    mapping = schema["discriminator"]["mapping"]
    assert {"classify", "jets"} <= set(mapping)
    classify = schema["$defs"]["ClassifyConfig"]["properties"]
    assert set(classify) >= {"version", "task", "seed", "data", "generate", "output"}
    assert "base_dir" not in classify
    jets = schema["$defs"]["JetsConfig"]["properties"]
    assert {"preset", "benchmark", "taggers", "max_particles", "device"} <= set(jets)


def test_shipped_default_config_is_valid_and_commented():
    cfg = ClassifyTask().default_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.generate is not None and cfg.generate.process == "higgs4l"
    assert {s.label for s in cfg.data.samples} == {0, 1}
    assert set(cfg.data.features) <= set(cfg.data.derived)
    assert ClassifyTask().template().count("#") > 10
