"""training.model: shapes, parameter counts, grouped connectivity, initialisation, LRN, features, dropout."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from training.model import FEATURE_DIM, AlexNet, build_alexnet, paper_lrn

# Built once per module: each AlexNet has ~61M parameters.


@pytest.fixture(scope="module")
def grouped() -> AlexNet:
    torch.manual_seed(0)
    return build_alexnet(1000).eval()


@pytest.fixture(scope="module")
def single() -> AlexNet:
    torch.manual_seed(1)
    return build_alexnet(1000, variant="single").eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    # Magnitudes like mean-subtracted pixels, so the LRN and the biases matter.
    gen = torch.Generator().manual_seed(2)
    return torch.randn(2, 3, 224, 224, generator=gen) * 60


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_variant_is_grouped(grouped: AlexNet) -> None:
    assert grouped.variant == "grouped"
    assert inspect.signature(build_alexnet).parameters["variant"].default == "grouped"
    assert inspect.signature(AlexNet).parameters["variant"].default == "grouped"
    assert [c.groups for c in grouped.conv_layers()] == [1, 2, 1, 2, 2]


@pytest.mark.parametrize("variant", ["grouped", "single"])
def test_output_shapes(variant: str, grouped: AlexNet, single: AlexNet, images: torch.Tensor) -> None:
    model = grouped if variant == "grouped" else single
    with torch.no_grad():
        logits, features = model(images)
    assert logits.shape == (2, 1000)
    assert features.shape == (2, FEATURE_DIM) == (2, 4096)
    assert logits.dtype == features.dtype == torch.float32


def test_output_shapes_small_num_classes() -> None:
    torch.manual_seed(3)
    model = build_alexnet(7, variant="single").eval()
    assert model.num_classes == 7 and model.classifier.out_features == 7
    with torch.no_grad():
        logits, features = model(torch.randn(3, 3, 224, 224))
    assert logits.shape == (3, 7)
    assert features.shape == (3, 4096)


def test_parameter_counts(grouped: AlexNet, single: AlexNet) -> None:
    # By hand from the layer sizes (weights + biases):
    #   conv1  96*3*11*11   + 96   =     34,944
    #   conv2 256*48*5*5    + 256  =    307,456 grouped | 256*96*5*5  + 256 =    614,656 single
    #   conv3 384*256*3*3   + 384  =    885,120
    #   conv4 384*192*3*3   + 384  =    663,936 grouped | 384*384*3*3 + 384 =  1,327,488 single
    #   conv5 256*192*3*3   + 256  =    442,624 grouped | 256*384*3*3 + 256 =    884,992 single
    #   fc6   9216*4096     + 4096 = 37,752,832
    #   fc7   4096*4096     + 4096 = 16,781,312
    #   fc8   4096*1000     + 1000 =  4,097,000
    #   total grouped 60,965,224; single 62,378,344
    by_hand_grouped = (
        (96 * 3 * 11 * 11 + 96)
        + (256 * 48 * 5 * 5 + 256)
        + (384 * 256 * 3 * 3 + 384)
        + (384 * 192 * 3 * 3 + 384)
        + (256 * 192 * 3 * 3 + 256)
        + (9216 * 4096 + 4096)
        + (4096 * 4096 + 4096)
        + (4096 * 1000 + 1000)
    )
    by_hand_single = by_hand_grouped + 256 * 48 * 5 * 5 + 384 * 192 * 3 * 3 + 256 * 192 * 3 * 3
    assert by_hand_grouped == 60_965_224
    assert by_hand_single == 62_378_344
    assert n_params(grouped) == 60_965_224
    assert n_params(single) == 62_378_344
    conv_counts = [n_params(c) for c in grouped.conv_layers()]
    assert conv_counts == [34_944, 307_456, 885_120, 663_936, 442_624]
    assert [n_params(f) for f in grouped.fc_layers()] == [37_752_832, 16_781_312, 4_097_000]


# conv index in conv_layers(), input channels, output channels
GROUPED_CONVS = [(1, 96, 256), (3, 384, 384), (4, 384, 256)]


@pytest.mark.parametrize(("index", "c_in", "c_out"), GROUPED_CONVS, ids=["conv2", "conv4", "conv5"])
def test_grouped_conv_halves_are_independent(grouped: AlexNet, index: int, c_in: int, c_out: int) -> None:
    conv = grouped.conv_layers()[index]
    gen = torch.Generator().manual_seed(index)
    x = torch.randn(1, c_in, 13, 13, generator=gen)
    perturbed_second = x.clone()
    perturbed_second[:, c_in // 2 :] += torch.randn(1, c_in // 2, 13, 13, generator=gen) * 5
    perturbed_first = x.clone()
    perturbed_first[:, : c_in // 2] += torch.randn(1, c_in // 2, 13, 13, generator=gen) * 5
    with torch.no_grad():
        base, after_second, after_first = conv(x), conv(perturbed_second), conv(perturbed_first)
    half = c_out // 2
    # The first tower's outputs ignore the second tower's inputs, and vice versa ...
    assert torch.equal(after_second[:, :half], base[:, :half])
    assert torch.equal(after_first[:, half:], base[:, half:])
    # ... but each tower does see its own inputs.
    assert not torch.allclose(after_second[:, half:], base[:, half:])
    assert not torch.allclose(after_first[:, :half], base[:, :half])


def test_single_variant_conv_sees_all_channels(single: AlexNet) -> None:
    conv2 = single.conv_layers()[1]
    x = torch.randn(1, 96, 13, 13)
    perturbed = x.clone()
    perturbed[:, 48:] += 5
    with torch.no_grad():
        assert not torch.allclose(conv2(perturbed)[:, :128], conv2(x)[:, :128])


def test_conv3_sees_both_towers_in_grouped_variant(grouped: AlexNet) -> None:
    conv3 = grouped.conv_layers()[2]
    assert conv3.groups == 1
    x = torch.randn(1, 256, 13, 13)
    perturbed = x.clone()
    perturbed[:, 128:] += 5
    with torch.no_grad():
        assert not torch.allclose(conv3(perturbed)[:, :192], conv3(x)[:, :192])


LAYER_NAMES = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
BIAS_ONE = {"conv2", "conv4", "conv5", "fc6", "fc7"}


def named_layers(model: AlexNet) -> dict[str, nn.Module]:
    return dict(zip(LAYER_NAMES, model.conv_layers() + model.fc_layers(), strict=True))


@pytest.mark.parametrize("variant", ["grouped", "single"])
def test_initialisation(variant: str, grouped: AlexNet, single: AlexNet) -> None:
    model = grouped if variant == "grouped" else single
    for name, layer in named_layers(model).items():
        w = layer.weight.detach().double()
        n = w.numel()
        # std of the sample std is ~ 0.01/sqrt(2n) (< 0.4% for conv1's 34,848 weights)
        assert w.std().item() == pytest.approx(0.01, rel=0.03), name
        assert abs(w.mean().item()) < 5 * 0.01 / np.sqrt(n), name
        expected_bias = 1.0 if name in BIAS_ONE else 0.0
        assert torch.equal(layer.bias.detach(), torch.full_like(layer.bias, expected_bias)), name


def test_reset_parameters_restores_the_rule() -> None:
    torch.manual_seed(4)
    model = build_alexnet(3)
    with torch.no_grad():
        for layer in model.conv_layers() + model.fc_layers():
            layer.weight.fill_(0.5)
            layer.bias.fill_(-3.0)
    model.reset_parameters()
    layers = named_layers(model)
    assert torch.equal(layers["conv4"].bias, torch.ones(384))
    assert torch.equal(layers["conv3"].bias, torch.zeros(384))
    assert layers["fc6"].weight.std().item() == pytest.approx(0.01, rel=0.03)


def lrn_by_formula(a: np.ndarray, n: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75) -> np.ndarray:
    """The paper's section 3.3: b_c = a_c / (k + alpha * sum_{j=max(0,c-n/2)}^{min(C-1,c+n/2)} a_j^2)^beta."""
    channels = a.shape[1]
    out = np.empty_like(a)
    for c in range(channels):
        lo, hi = max(0, c - n // 2), min(channels - 1, c + n // 2)
        sq_sum = (a[:, lo : hi + 1] ** 2).sum(axis=1)
        out[:, c] = a[:, c] / (k + alpha * sq_sum) ** beta
    return out


def test_paper_lrn_matches_the_formula() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(0, 100, size=(2, 12, 4, 5))  # values ~100: alpha * sum(a^2) ~ 5, comparable to k=2
    expected = lrn_by_formula(a)
    with torch.no_grad():
        got = paper_lrn()(torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0)
    # The factor alpha matters at these magnitudes (the test would not be able to tell otherwise).
    assert not np.allclose(expected, lrn_by_formula(a, alpha=0.0), rtol=1e-2)


def test_unscaled_alpha_would_not_match_the_paper() -> None:
    rng = np.random.default_rng(6)
    a = rng.normal(0, 100, size=(1, 10, 3, 3))
    naive = nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)  # torch divides alpha by n
    with torch.no_grad():
        got = naive(torch.from_numpy(a)).numpy()
    assert not np.allclose(got, lrn_by_formula(a), rtol=1e-2)
    # What torch's layer with alpha=1e-4 actually computes is the formula with alpha/5.
    np.testing.assert_allclose(got, lrn_by_formula(a, alpha=1e-4 / 5), rtol=1e-10)


def test_model_uses_paper_lrn_after_conv1_and_conv2(grouped: AlexNet) -> None:
    layers = list(grouped.features)
    lrn_positions = [i for i, m in enumerate(layers) if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrn_positions) == 2
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    # conv -> ReLU -> LRN -> max-pool, for conv1 and conv2 only
    assert [p - 2 for p in lrn_positions] == convs[:2]
    for p in lrn_positions:
        lrn = layers[p]
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, pytest.approx(5e-4), 0.75, 2.0)
        assert isinstance(layers[p - 1], nn.ReLU) and isinstance(layers[p + 1], nn.MaxPool2d)


def test_features_are_post_relu_fc7_and_feed_the_classifier(grouped: AlexNet, images: torch.Tensor) -> None:
    fc6, fc7, _ = grouped.fc_layers()
    with torch.no_grad():
        logits, features = grouped(images)
        x = torch.flatten(grouped.features(images), 1)
        pre_relu_fc7 = fc7(torch.relu(fc6(x)))
        assert (features >= 0).all()
        assert (pre_relu_fc7 < 0).any(), "test input should drive some fc7 units negative"
        torch.testing.assert_close(features, torch.relu(pre_relu_fc7))
        assert ((features == 0) == (pre_relu_fc7 <= 0)).all()
        torch.testing.assert_close(logits, grouped.classifier(features), rtol=0, atol=0)


def test_dropout_in_train_mode_only(grouped: AlexNet, images: torch.Tensor) -> None:
    dropouts = [m for m in grouped.hidden if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.5, 0.5]
    x = images[:1]
    try:
        grouped.train()
        with torch.no_grad():
            torch.manual_seed(7)
            train_a = grouped(x)[1]
            train_b = grouped(x)[1]
            torch.manual_seed(7)
            train_a_again = grouped(x)[1]
    finally:
        grouped.eval()
    with torch.no_grad():
        eval_a, eval_b = grouped(x)[1], grouped(x)[1]
    assert not torch.allclose(train_a, train_b)
    assert torch.equal(train_a, train_a_again)
    assert torch.equal(eval_a, eval_b)
    assert not torch.allclose(train_a, eval_a)


def test_invalid_variant_raises() -> None:
    with pytest.raises(ValueError, match="variant"):
        build_alexnet(10, variant="dual")  # type: ignore[arg-type]


def test_width_scales_every_layer_and_keeps_the_towers() -> None:
    """A quarter width (the tests' network): each layer's units over 4, still grouped, fc7 of 1024 as its features."""
    model = build_alexnet(7, width=0.25).eval()
    assert [conv.out_channels for conv in model.conv_layers()] == [24, 64, 96, 96, 64]
    assert [conv.groups for conv in model.conv_layers()] == [1, 2, 1, 2, 2]
    assert [fc.out_features for fc in model.fc_layers()] == [1024, 1024, 7]
    assert model.feature_dim == 1024 and build_alexnet(7).feature_dim == FEATURE_DIM
    with torch.no_grad():
        logits, features = model(torch.randn(2, 3, 224, 224) * 60)
    assert logits.shape == (2, 7) and features.shape == (2, 1024)
    narrowest = build_alexnet(7, width=0.01)
    assert [conv.out_channels for conv in narrowest.conv_layers()] == [2, 2, 4, 4, 2]  # even, at least 2
    for width in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="width"):
            build_alexnet(7, width=width)
