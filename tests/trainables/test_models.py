import dataclasses

import pytest
import torch

from trainables.models import MLP, MODEL, MODELS, ModelParams, RecurrentCNN, SimpleCNN, build_model, is_temporal
from trainables.switches import Switch

HEADS = {"digit": 10, "thickness": 5, "level": 1}
SHAPES = [(1, 8, 8), (3, 8, 8), (1, 32, 32), (3, 32, 32), (2, 5, 7)]


@pytest.mark.parametrize("kind", sorted(k for k in MODELS if not is_temporal(k)))
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shapes(kind, shape):
    model = build_model(kind, input_shape=shape, head_outputs=HEADS, hidden=16)
    out = model(torch.rand(4, *shape))
    assert {name: tuple(t.shape) for name, t in out.items()} == {name: (4, n) for name, n in HEADS.items()}


@pytest.mark.parametrize("kind", sorted(k for k in MODELS if is_temporal(k)))
@pytest.mark.parametrize("shape", SHAPES)
def test_temporal_output_shapes_have_a_step_axis(kind, shape):
    model = build_model(kind, input_shape=shape, head_outputs=HEADS, hidden=16)
    out = model(torch.rand(4, *shape), (True, False, True))
    assert {name: tuple(t.shape) for name, t in out.items()} == {name: (4, 3, n) for name, n in HEADS.items()}


def test_registry_and_seed_architecture():
    assert {kind: declared.implementation() for kind, declared in MODELS.items()} == {
        "simple_cnn": SimpleCNN, "mlp": MLP, "recurrent_cnn": RecurrentCNN}
    assert [k for k in MODELS if is_temporal(k)] == ["recurrent_cnn"]
    model = build_model("simple_cnn", input_shape=(1, 28, 28), head_outputs={"digit": 10, "thickness": 5, "smoothness": 3})
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2
    # Seed 002: 28x28 pools to 7x7 -> Linear(3136 -> 128), "mnist_mh_cnn_422k".
    assert model.backbone[10].in_features == 64 * 7 * 7
    assert 415_000 < sum(p.numel() for p in model.parameters()) < 430_000


def test_heads_share_the_backbone():
    model = build_model("mlp", input_shape=(1, 8, 8), head_outputs={"a": 3, "b": 2}, hidden=8)
    out = model(torch.rand(2, 1, 8, 8))
    out["a"].sum().backward()
    assert model.backbone[1].weight.grad is not None
    assert model.heads.layers["b"].weight.grad is None


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_heads_compute_in_float32_under_bfloat16_autocast(kind):
    # before: a one-unit regression head came out of bf16 (8-bit mantissa): read at 256 levels,
    # a quantized head was off by a quarter of a class on average
    torch.manual_seed(0)
    model = build_model(kind, input_shape=(1, 8, 8), head_outputs=HEADS, hidden=16).eval()
    args = ((True, True),) if is_temporal(kind) else ()
    x = torch.rand(4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, *args)
        features = []
        handle = model.heads.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
        model(x, *args)
        handle.remove()
    assert all(t.dtype == torch.float32 for t in out.values())
    # the heads' own float32 matmul of what the backbone gave them (in bf16)
    for step, feature in enumerate(features if is_temporal(kind) else features[:1]):
        for name, layer in model.heads.layers.items():
            expected = feature.float() @ layer.weight.T + layer.bias
            got = out[name][:, step] if is_temporal(kind) else out[name]
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_dropout_active_only_in_training():
    model = build_model("mlp", input_shape=(1, 8, 8), head_outputs={"a": 3}, hidden=64, dropout=0.5)
    x = torch.rand(8, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x)["a"], model(x)["a"])
    model.train()
    assert not torch.equal(model(x)["a"], model(x)["a"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "resnet"}, "model.kind must be one of"),
        ({"head_outputs": {}}, "at least one head"),
        ({"head_outputs": {"a": 0}}, "positive int"),
        ({"head_outputs": {"a.b": 2}}, "no '.'"),
        ({"input_shape": (8, 8)}, "three positive ints"),
        ({"dropout": 1.0}, r"model.simple_cnn.dropout must be a number in \[0, 1\)"),
        ({"hidden": 0}, r"model.simple_cnn.hidden must be an integer in \[1, 65536\]"),
    ],
)
def test_invalid_arguments(kwargs, message):
    args = {"kind": "simple_cnn", "input_shape": (1, 8, 8), "head_outputs": {"a": 2}} | kwargs
    with pytest.raises(ValueError, match=message):
        build_model(args.pop("kind"), **args)


def test_a_plugin_subclass_of_a_builtin_kind_keeps_its_parameters_and_its_timesteps(monkeypatch):
    class Wider(RecurrentCNN):
        """A plugin's variant: the inherited constructor, so RecurrentCNNParams' parameters."""

    monkeypatch.setitem(MODELS, "wider", Wider)
    assert MODEL.parameters("wider").keys() == MODEL.parameters("recurrent_cnn").keys()
    assert is_temporal("wider")
    model = build_model("wider", input_shape=(1, 8, 8), head_outputs={"a": 3}, hidden=8)
    assert isinstance(model, Wider) and model.heads_features == 8


def test_a_declaration_subclassed_in_another_module_resolves_the_inherited_fields():
    # The inherited fields' annotations resolve where they were written, not in the subclass's
    # module (which here imports nothing): no postponed annotations in the declarations.
    namespace = {"dataclass": dataclasses.dataclass, "ModelParams": ModelParams}
    exec("@dataclass(frozen=True, kw_only=True)\nclass Deep(ModelParams):\n    depth: int = 2\n", namespace)
    switch = Switch({"deep": namespace["Deep"]}, fixed=("input_shape", "head_outputs"))
    assert list(switch.parameters("deep")) == ["depth"]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MLP, {"hidden": 0}, r"hidden must be an integer in \[1, 65536\], but got 0"),
        (SimpleCNN, {"channels": (0, 8)}, r"channels must be a list of 2 integers in \[1, 65536\]"),
        (RecurrentCNN, {"cell": "lstm"}, r"cell must be one of \[leaky, gru\], but got 'lstm'"),
        (RecurrentCNN, {"leak": 0.0}, r"leak must be a number in \(0, 1\]"),
    ],
)
def test_a_model_class_built_directly_checks_its_own_parameters(cls, kwargs, message):
    # before, MLP(hidden=0) built an empty layer and RecurrentCNN(cell="lstm") failed in forward
    with pytest.raises(ValueError, match=message):
        cls(input_shape=(1, 8, 8), head_outputs={"a": 2}, **kwargs)
