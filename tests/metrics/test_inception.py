"""The FID Inception-v3: pytorch-fid's state-dict layout, safe loading, clear errors and the FID-specific patches.

The expected layout below is written from the reference sources, not from genlab's model: torchvision's
``Inception3`` constructor (``torchvision/models/inception.py``) as pytorch-fid's ``fid_inception_v3()`` builds
it, ``Inception3(num_classes=1008, aux_logits=False)`` with the FID blocks swapped in (same shapes).
No real weights exist offline, so the numbers of the real network are not checked here.
"""

from __future__ import annotations

import argparse
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from genlab.errors import CheckpointError, ConfigError
from genlab.metrics.inception import (
    FEATURE_DIM,
    INPUT_SIZE,
    NUM_CLASSES,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE,
    FIDInceptionV3,
    inception_weights_path,
    load_inception,
    save_inception,
)


# --- the reference layout, from torchvision's constructors -----------------------------------------------
def _conv(name: str, cin: int, cout: int, kh: int, kw: int | None = None) -> dict[str, tuple[int, ...]]:
    """torchvision's BasicConv2d: Conv2d(bias=False) + BatchNorm2d."""
    bn = {f"{name}.bn.{k}": (cout,) for k in ("weight", "bias", "running_mean", "running_var")}
    return {
        f"{name}.conv.weight": (cout, cin, kh, kh if kw is None else kw),
        **bn,
        f"{name}.bn.num_batches_tracked": (),
    }


def _inception_a(p: str, cin: int, pool_features: int) -> dict:
    return {**_conv(f"{p}.branch1x1", cin, 64, 1), **_conv(f"{p}.branch5x5_1", cin, 48, 1),
            **_conv(f"{p}.branch5x5_2", 48, 64, 5), **_conv(f"{p}.branch3x3dbl_1", cin, 64, 1),
            **_conv(f"{p}.branch3x3dbl_2", 64, 96, 3), **_conv(f"{p}.branch3x3dbl_3", 96, 96, 3),
            **_conv(f"{p}.branch_pool", cin, pool_features, 1)}  # fmt: skip


def _inception_b(p: str, cin: int) -> dict:
    return {**_conv(f"{p}.branch3x3", cin, 384, 3), **_conv(f"{p}.branch3x3dbl_1", cin, 64, 1),
            **_conv(f"{p}.branch3x3dbl_2", 64, 96, 3), **_conv(f"{p}.branch3x3dbl_3", 96, 96, 3)}  # fmt: skip


def _inception_c(p: str, cin: int, c7: int) -> dict:
    return {**_conv(f"{p}.branch1x1", cin, 192, 1), **_conv(f"{p}.branch7x7_1", cin, c7, 1),
            **_conv(f"{p}.branch7x7_2", c7, c7, 1, 7), **_conv(f"{p}.branch7x7_3", c7, 192, 7, 1),
            **_conv(f"{p}.branch7x7dbl_1", cin, c7, 1), **_conv(f"{p}.branch7x7dbl_2", c7, c7, 7, 1),
            **_conv(f"{p}.branch7x7dbl_3", c7, c7, 1, 7), **_conv(f"{p}.branch7x7dbl_4", c7, c7, 7, 1),
            **_conv(f"{p}.branch7x7dbl_5", c7, 192, 1, 7), **_conv(f"{p}.branch_pool", cin, 192, 1)}  # fmt: skip


def _inception_d(p: str, cin: int) -> dict:
    return {**_conv(f"{p}.branch3x3_1", cin, 192, 1), **_conv(f"{p}.branch3x3_2", 192, 320, 3),
            **_conv(f"{p}.branch7x7x3_1", cin, 192, 1), **_conv(f"{p}.branch7x7x3_2", 192, 192, 1, 7),
            **_conv(f"{p}.branch7x7x3_3", 192, 192, 7, 1), **_conv(f"{p}.branch7x7x3_4", 192, 192, 3)}  # fmt: skip


def _inception_e(p: str, cin: int) -> dict:
    return {**_conv(f"{p}.branch1x1", cin, 320, 1), **_conv(f"{p}.branch3x3_1", cin, 384, 1),
            **_conv(f"{p}.branch3x3_2a", 384, 384, 1, 3), **_conv(f"{p}.branch3x3_2b", 384, 384, 3, 1),
            **_conv(f"{p}.branch3x3dbl_1", cin, 448, 1), **_conv(f"{p}.branch3x3dbl_2", 448, 384, 3),
            **_conv(f"{p}.branch3x3dbl_3a", 384, 384, 1, 3), **_conv(f"{p}.branch3x3dbl_3b", 384, 384, 3, 1),
            **_conv(f"{p}.branch_pool", cin, 192, 1)}  # fmt: skip


def _reference_layout() -> dict[str, tuple[int, ...]]:
    return {
        **_conv("Conv2d_1a_3x3", 3, 32, 3), **_conv("Conv2d_2a_3x3", 32, 32, 3), **_conv("Conv2d_2b_3x3", 32, 64, 3),
        **_conv("Conv2d_3b_1x1", 64, 80, 1), **_conv("Conv2d_4a_3x3", 80, 192, 3),
        **_inception_a("Mixed_5b", 192, 32), **_inception_a("Mixed_5c", 256, 64), **_inception_a("Mixed_5d", 288, 64),
        **_inception_b("Mixed_6a", 288),
        **_inception_c("Mixed_6b", 768, 128), **_inception_c("Mixed_6c", 768, 160),
        **_inception_c("Mixed_6d", 768, 160), **_inception_c("Mixed_6e", 768, 192),
        **_inception_d("Mixed_7a", 768), **_inception_e("Mixed_7b", 1280), **_inception_e("Mixed_7c", 2048),
        "fc.weight": (1008, 2048), "fc.bias": (1008,),
    }  # fmt: skip


def _is_parameter(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def test_state_dict_has_pytorch_fids_keys_and_shapes():
    reference = _reference_layout()
    state = FIDInceptionV3().state_dict()
    assert sorted(state) == sorted(reference)
    assert {k: tuple(v.shape) for k, v in state.items()} == reference
    assert len(reference) == 94 * 6 + 2  # 5 stem + 3×7 (A) + 4 (B) + 4×10 (C) + 6 (D) + 2×9 (E) BasicConv2d
    assert not any(k.startswith("AuxLogits") for k in state)  # aux_logits=False in fid_inception_v3()
    spot_checks = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_2.conv.weight": (192, 192, 7, 1),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
        "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.bn.running_mean": (192,),
        "fc.weight": (NUM_CLASSES, FEATURE_DIM),
        "fc.bias": (NUM_CLASSES,),
    }
    for key, shape in spot_checks.items():
        assert tuple(state[key].shape) == shape, key


def test_parameter_count_matches_the_hand_derivation():
    # torchvision documents inception_v3 (1000 classes, with AuxLogits) at 27,161,264 parameters. pytorch-fid drops
    # AuxLogits (conv0 768→128 1×1, conv1 128→768 5×5, each with BN γ/β, fc 768→1000) and makes fc 2048→1008.
    aux_logits = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
    expected = 27_161_264 - aux_logits - (2048 * 1000 + 1000) + (2048 * 1008 + 1008)
    assert expected == 23_850_960
    from_layout = sum(math.prod(shape) for key, shape in _reference_layout().items() if _is_parameter(key))
    assert from_layout == expected
    assert sum(p.numel() for p in FIDInceptionV3().parameters()) == expected


# --- weights made here, saved both ways ---------------------------------------------------------------------
def _randomise(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """He-normal convs and random BatchNorm statistics, so activations neither vanish nor explode."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.weight[0].numel()), generator=generator)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.1, 0.1, generator=generator)
                layer.running_var.uniform_(0.5, 1.5, generator=generator)
                layer.weight.uniform_(0.8, 1.2, generator=generator)
                layer.bias.uniform_(-0.1, 0.1, generator=generator)
    return module.eval()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A seeded random network, its weights as .pth and .safetensors, its outputs and intermediate shapes."""
    generator = torch.Generator().manual_seed(0)
    model = _randomise(FIDInceptionV3(), generator)
    folder = tmp_path_factory.mktemp("inception")
    torch.save(model.state_dict(), folder / "weights.pth")
    save_inception(model, folder / "weights.safetensors")
    shapes = {}
    hooks = [
        child.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for name, child in model.named_children()
    ]
    images = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)
    features, logits = model(images)
    for hook in hooks:
        hook.remove()
    return {"model": model, "folder": folder, "images": images, "features": features, "logits": logits,
            "shapes": shapes}  # fmt: skip


@pytest.mark.parametrize("file_name", ["weights.pth", "weights.safetensors"])
def test_saved_weights_load_back_to_identical_outputs(reference, file_name):
    path = reference["folder"] / file_name
    model, sha256 = load_inception(path)
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    features, logits = model(reference["images"])
    assert torch.equal(features, reference["features"]) and torch.equal(logits, reference["logits"])


def test_outputs_shapes_and_values(reference):
    features, logits = reference["features"], reference["logits"]
    assert features.shape == (2, FEATURE_DIM) and logits.shape == (2, NUM_CLASSES)
    assert features.dtype == logits.dtype == torch.float32 and not features.requires_grad
    assert features.min() >= 0 and features.max() > 0  # the mean of ReLU outputs
    assert not torch.allclose(features[0], features[1])
    fc = reference["model"].fc
    torch.testing.assert_close(logits, features @ fc.weight.T + fc.bias)


def test_intermediate_shapes_match_torchvisions_comments(reference):
    c35, c17, c8 = (35, 35), (17, 17), (8, 8)
    expected = {"Conv2d_1a_3x3": (32, 149, 149), "Conv2d_2a_3x3": (32, 147, 147), "Conv2d_2b_3x3": (64, 147, 147),
                "maxpool1": (64, 73, 73), "Conv2d_3b_1x1": (80, 73, 73), "Conv2d_4a_3x3": (192, 71, 71),
                "maxpool2": (192, *c35), "Mixed_5b": (256, *c35), "Mixed_5c": (288, *c35), "Mixed_5d": (288, *c35),
                "Mixed_6a": (768, *c17), "Mixed_6b": (768, *c17), "Mixed_6c": (768, *c17), "Mixed_6d": (768, *c17),
                "Mixed_6e": (768, *c17), "Mixed_7a": (1280, *c8), "Mixed_7b": (2048, *c8), "Mixed_7c": (2048, *c8),
                "avgpool": (2048, 1, 1), "fc": (NUM_CLASSES,)}  # fmt: skip
    assert reference["shapes"] == expected


class _Stop(Exception):
    pass


def test_input_is_normalised_to_minus_one_one(reference):
    # pytorch-fid's normalize_input: the first conv sees 2x − 1.
    seen = []

    def record_and_stop(_module, args):
        seen.append(args[0])
        raise _Stop

    handle = reference["model"].Conv2d_1a_3x3.register_forward_pre_hook(record_and_stop)
    try:
        with pytest.raises(_Stop):
            reference["model"](torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), 0.25))
    finally:
        handle.remove()
    assert torch.equal(seen[0], torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), -0.5))


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((2, 1, 299, 299), torch.float32),
        ((2, 3, 224, 224), torch.float32),
        ((3, 299, 299), torch.float32),
        ((1, 3, 299, 299), torch.uint8),
    ],
)
def test_wrong_images_are_refused_in_one_line(reference, shape, dtype):
    with pytest.raises(ConfigError, match=r"\(B, 3, 299, 299\)") as info:
        reference["model"](torch.zeros(shape, dtype=dtype))
    assert "\n" not in str(info.value) and str(tuple(shape)) in str(info.value)
    assert "3 channels" in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(reference):
    model, _ = load_inception(reference["folder"] / "weights.safetensors", device="cuda")
    features, logits = model(reference["images"].cuda())
    torch.testing.assert_close(features.cpu(), reference["features"], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(logits.cpu(), reference["logits"], rtol=1e-3, atol=1e-3)


# --- files that must be refused ---------------------------------------------------------------------------
def _one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_inception(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file_says_how_to_provide_the_weights(tmp_path):
    for path in (tmp_path / "nowhere.pth", None):
        message = _one_line_error(path)
        assert "--inception-weights PATH" in message and "GENLAB_INCEPTION_WEIGHTS" in message
        assert "pt_inception-2015-12-05-6726825d.pth" in message and "never downloads" in message


def test_imagenet_inception_with_1000_classes_is_refused(reference, tmp_path):
    state = reference["model"].state_dict()
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, tmp_path / "imagenet.pth")
    message = _one_line_error(tmp_path / "imagenet.pth")
    assert "fc.weight" in message and "(1000, 2048)" in message and "(1008, 2048)" in message
    assert "not the FID network" in message


def test_torchvision_aux_logits_are_refused_as_not_the_fid_network(reference, tmp_path):
    state = reference["model"].state_dict()
    state["AuxLogits.fc.weight"], state["AuxLogits.fc.bias"] = torch.zeros(1000, 768), torch.zeros(1000)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "torchvision.safetensors")
    message = _one_line_error(tmp_path / "torchvision.safetensors")
    assert "2 unexpected keys (AuxLogits.fc.bias, AuxLogits.fc.weight)" in message
    assert "not the FID network" in message


def test_missing_keys_are_named_and_counted(reference, tmp_path):
    state = {k: v for k, v in reference["model"].state_dict().items() if not k.startswith("Mixed_7c.")}
    torch.save(state, tmp_path / "partial.pth")
    message = _one_line_error(tmp_path / "partial.pth")
    assert "45 missing keys (Mixed_7c.branch1x1.bn.bias, Mixed_7c.branch1x1.bn.running_mean, " in message
    assert "unexpected" not in message and "pt_inception-2015-12-05-6726825d.pth" in message


def test_pickled_python_objects_are_not_unpickled(tmp_path):
    torch.save({"fc.weight": torch.zeros(1), "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    message = _one_line_error(tmp_path / "pickled.pth")
    assert "pickled Python objects (argparse.Namespace)" in message and "state dict of tensors" in message


@pytest.mark.parametrize("name", ["not_a_dict.pth", "nested.pt"])
def test_files_that_are_not_state_dicts_are_refused(tmp_path, name):
    content = [torch.zeros(2)] if name == "not_a_dict.pth" else {"state_dict": {"fc.bias": torch.zeros(2)}}
    torch.save(content, tmp_path / name)
    assert "not a state dict of tensors" in _one_line_error(tmp_path / name)


def test_corrupt_files_are_refused(reference, tmp_path):
    (tmp_path / "truncated.pth").write_bytes((reference["folder"] / "weights.pth").read_bytes()[:4096])
    (tmp_path / "garbage.safetensors").write_bytes(b"this is not a safetensors file")
    (tmp_path / "garbage.pt").write_bytes(b"this is not a PyTorch file")
    (tmp_path / "weights.bin").write_bytes(b"")
    for name in ("truncated.pth", "garbage.safetensors", "garbage.pt"):
        message = _one_line_error(tmp_path / name)
        assert message.startswith("cannot read Inception weights") and "corrupt" in message
    assert ".safetensors, .pth or .pt" in _one_line_error(tmp_path / "weights.bin")


def test_data_parallel_prefix_and_old_batchnorm_files_load(reference, tmp_path):
    # Files saved before PyTorch 0.4.1 have no num_batches_tracked; nn.DataParallel prefixes "module.".
    state = {f"module.{k}": v for k, v in reference["model"].state_dict().items() if "num_batches" not in k}
    torch.save(state, tmp_path / "old.pth")
    model, _ = load_inception(tmp_path / "old.pth")
    for key, value in reference["model"].state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_weights_path_prefers_the_explicit_one(monkeypatch, tmp_path):
    monkeypatch.delenv("GENLAB_INCEPTION_WEIGHTS", raising=False)
    assert inception_weights_path(None) is None
    monkeypatch.setenv("GENLAB_INCEPTION_WEIGHTS", str(tmp_path / "env.pth"))
    assert inception_weights_path(None) == tmp_path / "env.pth"
    assert inception_weights_path(str(tmp_path / "cli.pth")) == tmp_path / "cli.pth"


def test_save_inception_needs_a_safetensors_name(tmp_path):
    with pytest.raises(ConfigError, match=r"\*\.safetensors"):
        save_inception(FIDInceptionV3(), tmp_path / "weights.pth")


# --- the FID patches, against computations written out by hand ---------------------------------------------
def _basic_conv_1x1_by_hand(layer, x: torch.Tensor) -> torch.Tensor:
    """ReLU(BN(conv 1×1 (x))) with TensorFlow's BatchNorm epsilon 0.001, in eval mode."""
    y = torch.einsum("oc,bchw->bohw", layer.conv.weight[:, :, 0, 0], x)
    bn = layer.bn
    scale = (bn.weight / torch.sqrt(bn.running_var + 0.001))[:, None, None]
    return torch.relu((y - bn.running_mean[:, None, None]) * scale + bn.bias[:, None, None])


def _windows_3x3(x: torch.Tensor, fill: float) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H, W, 9): each pixel's 3×3 neighbourhood, `fill` outside the image."""
    padded = F.pad(x, (1, 1, 1, 1), value=fill)
    return padded.unfold(2, 3, 1).unfold(3, 3, 1).flatten(-2)


@pytest.mark.parametrize(
    "make_block, in_channels, pool_channels",
    [
        (lambda: FIDInceptionA(192, pool_features=32), 192, 32),
        (lambda: FIDInceptionC(768, channels_7x7=128), 768, 192),
        (lambda: FIDInceptionE(1280, pool="avg"), 1280, 192),
    ],
    ids=["Mixed_5b", "Mixed_6b", "Mixed_7b"],
)
def test_average_pool_leaves_padding_out_of_the_mean(make_block, in_channels, pool_channels):
    generator = torch.Generator().manual_seed(1)
    block = _randomise(make_block(), generator)
    x = torch.rand(1, in_channels, 5, 5, generator=generator) + 1.0  # away from 0, so padded zeros would show
    with torch.no_grad():
        out = block(x)
        inside = _windows_3x3(torch.ones_like(x), 0.0).sum(-1)  # 4 at corners, 6 on edges, 9 inside
        tf_mean = _windows_3x3(x, 0.0).sum(-1) / inside
        torch_mean = _windows_3x3(x, 0.0).sum(-1) / 9  # count_include_pad=True, torchvision's default
        torch.testing.assert_close(out[:, -pool_channels:], _basic_conv_1x1_by_hand(block.branch_pool, tf_mean))
        assert not torch.allclose(out[:, -pool_channels:], _basic_conv_1x1_by_hand(block.branch_pool, torch_mean))
        torch.testing.assert_close(
            out[:, : block.branch1x1.conv.out_channels], _basic_conv_1x1_by_hand(block.branch1x1, x)
        )


def test_mixed_7c_max_pools_its_pool_branch():
    generator = torch.Generator().manual_seed(2)
    block = _randomise(FIDInceptionE(2048, pool="max"), generator)
    x = torch.randn(1, 2048, 4, 4, generator=generator)
    with torch.no_grad():
        out = block(x)
        assert out.shape == (1, 2048, 4, 4)
        max_pooled = _windows_3x3(x, -math.inf).amax(-1)
        torch.testing.assert_close(out[:, -192:], _basic_conv_1x1_by_hand(block.branch_pool, max_pooled))
        avg_pooled = _windows_3x3(x, 0.0).sum(-1) / _windows_3x3(torch.ones_like(x), 0.0).sum(-1)
        assert not torch.allclose(out[:, -192:], _basic_conv_1x1_by_hand(block.branch_pool, avg_pooled))
        torch.testing.assert_close(out[:, :320], _basic_conv_1x1_by_hand(block.branch1x1, x))


def test_inception_e_refuses_an_unknown_pool():
    with pytest.raises(ConfigError, match="valid pools: 'avg', 'max'"):
        FIDInceptionE(1280, pool="mean")
