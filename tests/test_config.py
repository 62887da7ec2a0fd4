"""Config layering, validation messages (key + file + line), schema docs."""
from pathlib import Path

import pytest

from ctr_pipeline.config import (build_config, describe, flag_layer, load_config, load_file_layer, parse_set_option,
                                 resolved_columns, schema_markdown, section_hash)
from ctr_pipeline.errors import ConfigError
from ctr_pipeline.schema import Config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_criteo_layout():
    cfg = build_config([])
    assert cfg == Config()
    numeric, categorical = resolved_columns(cfg)
    assert numeric[0] == "I1" and numeric[-1] == "I13" and len(categorical) == 26
    assert cfg.source_of("training.max_depth") == "default"


def test_layers_override_in_order_and_remember_sources(tmp_path):
    path = write(tmp_path, "training:\n  max_depth: 4\n  n_estimators: 50\nsampling:\n  seed: 3\n")
    cfg = load_config(str(path), overrides=[parse_set_option("training.max_depth=8"),
                                            flag_layer("--input", "input.path", "x.tsv")])
    assert cfg.training.max_depth == 8 and cfg.training.n_estimators == 50 and cfg.sampling.seed == 3
    assert cfg.input.path == "x.tsv"
    assert cfg.source_of("training.max_depth") == "--set training.max_depth"
    assert cfg.source_of("training.n_estimators") == f"{path} line 3"
    assert cfg.source_of("input.path") == "--input"
    assert "# --set training.max_depth" in describe(cfg)


def test_unknown_key_names_key_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, "training:\n  max_depth: 4\n  max_dept: 5\n")
    with pytest.raises(ConfigError, match=rf"{path} line 3: unknown key 'training.max_dept' \(did you mean "
                                          r"'max_depth'\?\)"):
        load_config(str(path))


def test_unknown_section(tmp_path):
    path = write(tmp_path, "trainig:\n  max_depth: 4\n")
    with pytest.raises(ConfigError, match=r"line 1: unknown section 'trainig' \(did you mean 'training'\?\)"):
        load_config(str(path))


@pytest.mark.parametrize("text, message", [
    ("training:\n  max_depth: deep\n", r"line 2: training.max_depth: expected an integer, got 'deep'"),
    ("training:\n  max_depth: 0\n", r"line 2: training.max_depth: must be >= 1, got 0"),
    ("training:\n  learning_rate: 0\n", r"training.learning_rate: must be > 0.0, got 0.0"),
    ("training:\n  tree_method: exact\n", r"training.tree_method: 'exact' is not one of approx, hist, gpu_hist"),
    ("input:\n  max_bad_share: 1.5\n", r"input.max_bad_share: must be <= 1.0, got 1.5"),
    ("input:\n  numeric: 3\n", r"input.numeric: expected a list, got 3"),
    ("training:\n  max_depth: true\n", r"expected an integer, got True"),
    ("sampling:\n  train: 0.8\n  validation: 0.2\n  test: 0.2\n", r"sum to 1.2, more than 1"),
    ("sampling:\n  train: 1.5\n", r"sampling.train: a fraction must be <= 1.0, got 1.5"),
    ("sampling:\n  train: -3\n", r"sampling.train: must be >= 0, got -3"),
    ("sampling:\n  test: 0\n", r"sampling.test must be positive"),
    ("sampling:\n  train: many\n", r"expected a row count or a fraction, got 'many'"),
    ("sampling:\n  strata_rates: {0: 0.1}\n", r"sampling.strata_rates needs sampling.stratify_by"),
    ("sampling:\n  stratify_by: label\n  strata_rates: {0: 2}\n", r"must be a rate in \(0, 1\], got 2"),
    ("sampling:\n  strata_sizes: {train: {1: 5}}\n", r"sampling.strata_sizes needs sampling.stratify_by"),
    ("sampling:\n  stratify_by: label\n  strata_sizes: {trian: {1: 5}}\n", r"got 'trian'"),
    ("sampling:\n  stratify_by: label\n  strata_sizes: {train: {1: 0.5}}\n", r"must be a row count >= 0"),
    ("input:\n  format: csv\n", r"input.format 'csv' needs input.numeric and/or input.categorical"),
    ("input:\n  numeric: [I1, I99]\n", r"input.numeric: I99 not in the criteo_dac layout"),
    ("training:\n  params: {eta: 0.3}\n", r"training.params: eta have their own keys"),
    ("training:\n  early_stopping_rounds: 5\nsampling:\n  validation: 0\n", r"needs a validation split"),
    ("- a\n- b\n", r"expected a mapping of sections"),
    ("training: [1, 2]\n", r"section 'training' must be a mapping"),
    ("training:\n  max_depth: [\n", r"not valid YAML"),
])
def test_bad_values_name_key_and_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(str(path))
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_file_layer(tmp_path / "nope.yaml")


def test_set_option_parsing():
    assert parse_set_option("training.params.max_bin=64").values == {"training": {"params": {"max_bin": 64}}}
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        parse_set_option("max_depth")


def test_mapping_fields_merge_by_key(tmp_path):
    path = write(tmp_path, "training:\n  params: {max_delta_step: 1, subsample: 0.8}\n")
    cfg = load_config(str(path), overrides=[parse_set_option("training.params.subsample=0.5")])
    assert dict(cfg.training.params) == {"max_delta_step": 1, "subsample": 0.5}


def test_section_hash_tracks_only_named_sections():
    a = build_config([])
    b = build_config([parse_set_option("training.max_depth=3")])
    assert section_hash(a, "sampling") == section_hash(b, "sampling")
    assert section_hash(a, "training") != section_hash(b, "training")


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(name):
    load_config(str(REPO / "configs" / name))


def test_example_config_documents_every_key():
    import dataclasses

    from ctr_pipeline.schema import SECTIONS

    layer = load_file_layer(REPO / "configs" / "example.yaml")
    for section in SECTIONS:
        for f in dataclasses.fields(type(getattr(Config(), section))):
            assert f.name in layer.values.get(section, {}), f"configs/example.yaml lacks {section}.{f.name}"


def test_docs_match_schema():
    assert (REPO / "docs" / "config.md").read_text() == schema_markdown() + "\n", \
        "docs/config.md is stale: run `ctr-pipeline config --schema > docs/config.md`"


def test_local_sessions_get_shuffle_partitions_for_their_cores():
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import local_cores, session_conf

    assert local_cores("local") == 1 and local_cores("local[3]") == 3 and local_cores("local[2,4]") == 2
    assert session_conf(SparkConfig(), "local[2]")["spark.sql.shuffle.partitions"] == "8"
    assert "spark.sql.shuffle.partitions" not in session_conf(SparkConfig(), "spark://10.0.0.1:7077")
    mine = SparkConfig(conf={"spark.sql.shuffle.partitions": 64})
    assert session_conf(mine, "local[2]")["spark.sql.shuffle.partitions"] == "64"
