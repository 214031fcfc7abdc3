"""The diffusion commands end to end: sample with sampler options, inpaint, img2img, and their errors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.test_cli import assert_one_line_error


def _digit_png(path, size=8):
    image = np.zeros((size, size), np.uint8)
    image[1:-1, size // 2 - 1 : size // 2 + 1] = 255  # a "1"
    Image.fromarray(image).save(path)
    return path


def _mask_png(path, size=8):
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 2] = 255  # regenerate the top half
    Image.fromarray(mask).save(path)
    return path


def test_sample_with_sampler_options(cli, ddpm_run, tmp_path):
    out = tmp_path / "s.npz"
    args = ("sample", ddpm_run, "--n", "6", "--label", "3", "--sampler", "ddim", "--steps", "5", "--eta", "0.5",
            "--guidance-scale", "2", "--seed", "4", "--out", out)  # fmt: skip
    code, _, err = cli(*args)
    assert code == 0, err
    first = np.load(out)["samples"]
    assert first.shape == (6, 8, 8, 1) and (np.load(out)["labels"] == 3).all()
    assert cli(*args)[0] == 0
    assert (np.load(out)["samples"] == first).all()  # the seed fixes every draw
    assert cli("sample", ddpm_run, "--n", "4", "--steps", "4", "--out", tmp_path / "g.png")[0] == 0


def test_inpaint_and_img2img(cli, ddpm_run, tmp_path):
    image, mask = _digit_png(tmp_path / "in.png"), _mask_png(tmp_path / "mask.png")
    out = tmp_path / "inpainted.npz"
    code, _, err = cli("inpaint", ddpm_run, "--image", image, "--mask", mask, "--out", out, "--steps", "5",
                       "--resample", "2", "--n", "2", "--seed", "1")  # fmt: skip
    assert code == 0, err
    result = np.load(out)["samples"]
    original = np.asarray(Image.open(image))[None, :, :, None]
    assert result.shape == (2, 8, 8, 1)
    assert np.abs(result[:, 4:].astype(int) - original[:, 4:]).max() <= 1  # kept half survives the uint8 round trip
    code, _, err = cli("img2img", ddpm_run, "--image", image, "--strength", "0.5", "--out", tmp_path / "i2i.png",
                       "--steps", "6", "--label", "7")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "i2i.png").exists()


def test_editing_errors_are_one_line(cli, ddpm_run, vae_run, tmp_path):
    image = _digit_png(tmp_path / "in.png")
    big_mask = _mask_png(tmp_path / "big.png", size=16)
    out = tmp_path / "o.png"
    assert_one_line_error(cli("inpaint", ddpm_run, "--image", image, "--mask", big_mask, "--out", out),
                          "mask is 16×16", "image is 8×8")  # fmt: skip
    assert_one_line_error(cli("img2img", ddpm_run, "--image", image, "--strength", "1.5", "--out", out),
                          "strength=1.5 must be in [0, 1]")  # fmt: skip
    assert_one_line_error(cli("img2img", ddpm_run, "--image", big_mask, "--strength", "0.5", "--out", out),
                          "16×16", "--resize")  # fmt: skip
    assert cli("img2img", ddpm_run, "--image", big_mask, "--strength", "0.5", "--out", out, "--resize",
               "--steps", "4")[0] == 0  # fmt: skip
    assert_one_line_error(cli("sample", ddpm_run, "--label", "12", "--out", out), "label 12 was never seen")
    assert_one_line_error(cli("sample", ddpm_run, "--sampler", "euler", "--out", out), "sampler 'euler'")
    assert_one_line_error(cli("sample", vae_run, "--guidance-scale", "2", "--out", out),
                          "no option 'guidance_scale'")  # fmt: skip
    assert_one_line_error(cli("img2img", vae_run, "--image", image, "--strength", "0.5", "--out", out),
                          "vae models cannot img2img")  # fmt: skip
    (tmp_path / "o.png").unlink()
    assert_one_line_error(cli("inpaint", ddpm_run, "--image", tmp_path / "missing.png", "--mask", image,
                              "--out", out), "missing.png")  # fmt: skip
    assert not out.exists()
