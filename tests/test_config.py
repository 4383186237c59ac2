"""Config loading: defaults, YAML, CLI overrides, and errors that name the key and the choices."""
import pytest

from jetcam_app.cli import build_parser, overrides_from
from jetcam_app.config import load_config
from jetcam_app.errors import ConfigError


def test_defaults_come_from_default_yaml():
    config = load_config()
    assert config.model.name == "nanodet"
    assert config.engine.backend == "cpu" and config.engine.precision == "fp32"
    assert config.source.uri == "sample"


def test_yaml_then_cli_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: mobilenet_v2\n  topk: 3\nengine:\n  threads: 1\n")
    args = build_parser().parse_args(["--topk", "4", "--max-frames", "7", "--headless"])
    config = load_config(str(path), overrides_from(args))
    assert (config.model.name, config.model.topk, config.engine.threads) == ("mobilenet_v2", 4, 1)
    assert config.pipeline.max_frames == 7 and config.output.headless is True


def test_flags_not_given_do_not_override_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("source:\n  pace: true\n")
    config = load_config(str(path), overrides_from(build_parser().parse_args([])))
    assert config.source.pace is True


@pytest.mark.parametrize("yaml_text, message", [
    ("model:\n  nmae: x\n", "unknown key 'model.nmae'; valid keys: name, weights"),
    ("modle:\n  name: x\n", "unknown section 'modle'"),
    ("model:\n  name: yolo\n", "unknown model 'yolo'; choose one of: nanodet"),
    ("engine:\n  backend: tpu\n", "unknown backend 'tpu'; choose one of: cpu, cuda"),
    ("engine:\n  precision: int8\n", "unknown precision 'int8'; choose one of: fp32, fp16"),
    ("engine:\n  precision: fp16\n", "fp16 runs on CUDA only"),
    ("pipeline:\n  max_frames: many\n", "pipeline.max_frames must be int"),
    ("source:\n  pace: maybe\n", "source.pace must be true or false"),
    ("model: [1, 2]\n", "section 'model' must be a mapping"),
    ("model:\n  score_threshold: 2\n", "between 0 and 1"),
    ("pipeline:\n  in_flight: -1\n", "pipeline.in_flight must be 0 (automatic)"),
])
def test_bad_config_names_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert message in str(info.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/config.yaml")


def test_default_yaml_documents_every_key():
    import dataclasses

    from jetcam_app.config import DEFAULT_CONFIG, Config

    text = open(DEFAULT_CONFIG).read()
    assert [ln for ln in text.splitlines() if ln.startswith("sources:") and "#" in ln]
    for section in dataclasses.fields(Config):
        if section.name == "sources":  # a list of `source:` sections, checked above
            continue
        for field in dataclasses.fields(section.type if not isinstance(section.type, str)
                                        else getattr(__import__("jetcam_app.config", fromlist=["x"]),
                                                     section.type)):
            line = [ln for ln in text.splitlines() if ln.strip().startswith(field.name + ":")]
            assert line and "#" in line[0], "%s.%s lacks a commented line in default.yaml" % (section.name, field.name)


def test_the_fused_graph_is_a_pipeline_option_on_by_default():
    assert load_config().pipeline.cuda_graph is True
    assert load_config(None, overrides_from(build_parser().parse_args(["--no-cuda-graph"]))).pipeline.cuda_graph is False
    assert load_config(None, overrides_from(build_parser().parse_args(["--cuda-graph"]))).pipeline.cuda_graph is True
    assert "cuda_graph" not in overrides_from(build_parser().parse_args([]))  # YAML values survive


@pytest.mark.parametrize("origin", ["yaml", "override"])
def test_a_renamed_key_is_read_with_a_deprecation_warning(tmp_path, caplog, origin):
    path = tmp_path / "old.yaml"
    path.write_text("engine:\n  cuda_graph: false\n  threads: 1\n")
    with caplog.at_level("WARNING"):
        if origin == "yaml":
            config = load_config(str(path))
        else:
            config = load_config(None, {"engine.cuda_graph": "false", "engine.threads": 1})
    assert config.pipeline.cuda_graph is False and config.engine.threads == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "'engine.cuda_graph' is deprecated; use 'pipeline.cuda_graph'" in warnings[0]


def test_an_alias_value_is_checked_like_the_new_key(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("engine:\n  cuda_graph: sometimes\n")
    with pytest.raises(ConfigError, match="pipeline.cuda_graph must be true or false"):
        load_config(str(path))


@pytest.mark.parametrize("backend", ["cuda", "onnxruntime", "trt", "torch2trt"])
def test_fp16_is_accepted_where_the_backend_declares_it(backend):
    from jetcam_app.inference.engines.base import capabilities_of

    assert "fp16" in capabilities_of(backend).precisions
    assert load_config(None, {"engine.backend": backend, "engine.precision": "fp16"}).engine.precision == "fp16"
