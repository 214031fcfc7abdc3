"""A small UNet denoiser for diffusion models (Ho et al. 2020; Nichol & Dhariwal 2021).

Levels of residual blocks at halving resolutions, self-attention at the low-resolution levels, skip
connections from each down block to its mirror up block. The timestep enters every residual block
as a sinusoidal embedding passed through an MLP; a class label, when the model is conditional, is
an embedding added to it, with one extra "no label" entry used by classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """(B,) timesteps → (B, dim) sinusoids [cos | sin] at geometric frequencies (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups (Wu & He 2018), as many as divide ``channels``."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus the time embedding as a per-channel shift, twice, with a skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # SiLU first, as in Ho et al.: the time MLP ends linear
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions, through scaled_dot_product_attention."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ConfigError(f"attention over {channels} channels cannot split into {heads} heads; change heads.")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # contiguous (B, heads, HW, c/heads) each: the fused CPU kernels need a unit-stride last dim
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous().unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """The residual (and attention) blocks of one resolution."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int, dropout: float, heads: int, attention: bool):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(i, o, emb_dim, dropout) for i, o in chans)
        self.attn = nn.ModuleList(Attention(o, heads) if attention else nn.Identity() for _, o in chans)


class UNet(nn.Module):
    """(x_t (B, C, H, W), t (B,), labels (B,) or None) → (B, C, H, W) network output.

    ``channel_mults[i]`` scales ``base_channels`` at level i (level i works at H/2^i);
    ``attention_levels`` lists the levels with self-attention. H and W must divide by
    2^(levels − 1); :func:`check_unet_size` says which sizes work.
    """

    def __init__(
        self, *, channels: int, base_channels: int, channel_mults: tuple[int, ...], num_res_blocks: int,
        attention_levels: tuple[int, ...], attention_heads: int, dropout: float, num_classes: int,
    ) -> None:  # fmt: skip
        super().__init__()
        emb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.num_classes = num_classes
        # index num_classes is "no label", for classifier-free guidance
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        widths = [base_channels * m for m in channel_mults]
        self.stem = nn.Conv2d(channels, base_channels, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for i, width in enumerate(widths):
            chans = []
            for _ in range(num_res_blocks):
                chans.append((ch, width))
                ch = width
                skips.append(ch)
            self.down.append(Level(chans, emb_dim, dropout, attention_heads, i in attention_levels))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            if not last:
                skips.append(ch)
        self.mid = Level([(ch, ch), (ch, ch)], emb_dim, dropout, attention_heads, False)
        self.mid_attn = Attention(ch, attention_heads)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            chans = []
            for _ in range(num_res_blocks + 1):
                chans.append((ch + skips.pop(), width))
                ch = width
            self.up.append(Level(chans, emb_dim, dropout, attention_heads, i in attention_levels))
            self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1) if i > 0 else nn.Identity())
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))
        if self.label_emb is not None:
            if labels is None:  # unconditional prediction: the "no label" entry
                labels = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.label_emb(labels)
        h = self.stem(x)
        skips = [h]
        for level, down in zip(self.down, self.downsample, strict=True):
            for res, attn in zip(level.res, level.attn, strict=True):
                h = attn(res(h, emb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self.mid_attn(self.mid.res[0](h, emb))
        h = self.mid.res[1](h, emb)
        for level, up in zip(self.up, self.upsample, strict=True):
            for res, attn in zip(level.res, level.attn, strict=True):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(h)


def check_unet_size(height: int, width: int, levels: int) -> None:
    """A UNet with ``levels`` levels halves the image levels − 1 times: both sides must divide by that power of 2."""
    factor = 2 ** (levels - 1)
    if height % factor or width % factor:
        sizes = ", ".join(str(factor * k) for k in range(1, 9))
        raise ConfigError(
            f"a UNet with {levels} levels (channel_mults) needs image sides divisible by {factor}, got "
            f"{height}×{width}: sizes {sizes}… work; resize with --image-size N or use fewer channel_mults."
        )
