"""GPT: a decoder-only transformer language model (Radford et al. 2018, 2019).

Pre-norm blocks (LayerNorm → causal self-attention → residual, LayerNorm → MLP → residual),
attention through ``scaled_dot_product_attention``, learned or rotary positions (Su et al. 2021),
the output layer tied to the token embedding. With ``activation="gelu_tanh"``, ``bias=True`` and
learned positions it is GPT-2's architecture exactly, so GPT-2 weights load into it
(:mod:`genlab.models.hf`).

Generation keeps a key/value cache of ``context_length`` positions per layer, preallocated once per
call and written in place: each new token costs one row of attention per layer, not a pass over
the whole text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.config import check, validate
from genlab.models.sequence import SequenceModel, check_sequence_config
from genlab.registry import register_family


# --- positions ----------------------------------------------------------------------------------
def positions_of(mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    """(B, T) position of each token: 0 at each row's first real token (left padding gets 0)."""
    if mask is None:
        return torch.arange(length, device=device).expand(batch, length)
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def rotary_tables(positions: Tensor, dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (B, 1, T, dim) for rotating query/key pairs (x_i, x_{i+dim/2})."""
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    angles = positions.float()[..., None] * inv_freq  # (B, T, dim/2)
    angles = torch.cat([angles, angles], -1)[:, None]  # (B, 1, T, dim)
    return angles.cos(), angles.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Apply the rotary embedding to (B, H, T, D) queries or keys (the GPT-NeoX half-split form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return (x * cos + rotated * sin).to(x.dtype)


# --- layers -------------------------------------------------------------------------------------
class Dense(nn.Module):
    """``y = x W + b`` with W stored (in, out), GPT-2's layout (transformers' ``Conv1D``), so GPT-2
    weights load without a transpose. For speed the layout is a wash in fp32 (a 384×1536 GEMV took
    70 µs either way in benchmarks/gpt.py); under emulated bf16 (CPUs without AVX-512 BF16/AMX)
    ``addmm`` on this layout is ~11× slower than ``nn.Linear``'s, one more reason to train in fp32 there."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.weight, 0.0, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        y = flat @ self.weight if self.bias is None else torch.addmm(self.bias, flat, self.weight)
        return y.view(*x.shape[:-1], self.weight.shape[1])


# --- the key/value cache --------------------------------------------------------------------------
class KVCache:
    """Keys and values of every layer for ``capacity`` positions, written in place as tokens arrive.

    ``length`` positions are filled (left padding included); ``positions`` (B,) is each row's next
    position; ``mask`` (B, capacity) marks real tokens when some row is padded, else None.
    """

    def __init__(self, layers: int, batch: int, heads: int, capacity: int, head_dim: int, like: Tensor) -> None:
        shape = (batch, heads, capacity, head_dim)
        self.keys = [like.new_empty(shape) for _ in range(layers)]
        self.values = [like.new_empty(shape) for _ in range(layers)]
        self.length = 0
        self.positions = torch.zeros(batch, dtype=torch.long, device=like.device)
        self.mask: Tensor | None = None

    def select(self, index: Tensor) -> None:
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.positions = self.positions.index_select(0, index)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)


# --- blocks ---------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool, dropout: float, rotary: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.rotary, self.dropout = heads, dim // heads, rotary, dropout
        self.qkv = Dense(dim, 3 * dim, bias=bias)
        self.proj = Dense(dim, dim, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        *,
        rope: tuple[Tensor, Tensor] | None,
        attn_mask: Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        is_causal = attn_mask is None and cache is None and T > 1
        if cache is not None:  # write this step's keys/values, attend over everything so far
            start = cache.length
            cache.keys[layer][:, :, start : start + T] = k
            cache.values[layer][:, :, start : start + T] = v
            k, v = cache.keys[layer][:, :, : start + T], cache.values[layer][:, :, : start + T]
            is_causal = attn_mask is None and start == 0 and T > 1
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool, dropout: float, activation: str) -> None:
        super().__init__()
        self.fc = Dense(dim, hidden, bias=bias)
        self.act = nn.GELU(approximate="tanh" if activation == "gelu_tanh" else "none")
        self.proj = Dense(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps, bias=c.bias)
        self.attn = CausalSelfAttention(c.embed_dim, c.num_heads, c.bias, c.dropout, c.positions == "rotary")
        self.norm2 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps, bias=c.bias)
        self.mlp = MLP(c.embed_dim, c.mlp_ratio * c.embed_dim, c.bias, c.dropout, c.activation)

    def forward(self, x: Tensor, **attn: object) -> Tensor:
        x = x + self.attn(self.norm1(x), **attn)
        return x + self.mlp(self.norm2(x))


# --- config and model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 0  # 0: set from the tokenizer when training
    context_length: int = 256  # tokens the model sees at once (and the learned position table's size)
    num_layers: int = 6
    num_heads: int = 6
    embed_dim: int = 384
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True  # biases in linear layers and LayerNorms (GPT-2 has them)
    positions: Literal["learned", "rotary"] = "learned"
    activation: Literal["gelu", "gelu_tanh"] = "gelu"  # gelu_tanh is GPT-2's "gelu_new"
    norm_eps: float = 1e-5
    tie_weights: bool = True  # the output layer shares the token embedding's weights
    tokenizer: Literal["char", "bpe", "gpt2", "music"] = "char"
    bpe_vocab_size: int = 1024  # with tokenizer="bpe": the size of the vocabulary trained on the corpus

    def __post_init__(self) -> None:
        validate(self)
        check_sequence_config(self)
        check(self.num_layers >= 1 and self.num_heads >= 1, "num_layers and num_heads must be at least 1.")
        check(
            self.embed_dim % self.num_heads == 0,
            f"embed_dim={self.embed_dim} must divide by num_heads={self.num_heads}.",
        )
        check(
            self.positions != "rotary" or (self.embed_dim // self.num_heads) % 2 == 0,
            "rotary positions need an even head size (embed_dim / num_heads).",
        )
        check(0 <= self.dropout < 1, f"dropout={self.dropout} must be in [0, 1).")
        check(self.mlp_ratio >= 1, f"mlp_ratio={self.mlp_ratio} must be at least 1.")


@register_family("gpt", GPTConfig, "decoder-only transformer language model (text, music), KV-cached generation")
class GPT(SequenceModel):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.embed_dim)
        self.pos_emb = nn.Embedding(c.context_length, c.embed_dim) if c.positions == "learned" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.norm_f = nn.LayerNorm(c.embed_dim, eps=c.norm_eps, bias=c.bias)
        self.head = nn.Linear(c.embed_dim, c.vocab_size, bias=False)
        if c.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2·layers)
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.num_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding, Dense)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, (nn.Linear, Dense)) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # --- the network ----------------------------------------------------------------------------
    def _run(self, ids: Tensor, positions: Tensor, attn_mask: Tensor | None, cache: KVCache | None) -> Tensor:
        """Token ids (B, T) at ``positions`` (B, T) → final hidden states (B, T, C)."""
        x = self.tok_emb(ids)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        x = self.drop(x)
        rope = None
        if self.config.positions == "rotary":
            rope = rotary_tables(positions, self.config.embed_dim // self.config.num_heads)
        for i, block in enumerate(self.blocks):
            x = block(x, rope=rope, attn_mask=attn_mask, cache=cache, layer=i)
        return self.norm_f(x)

    @staticmethod
    def _padding_mask(key_mask: Tensor, queries: int) -> Tensor:
        """(B, 1, Tq, Tk) boolean: causal within the last ``queries`` keys and only real keys; a padded
        query also sees itself so that no row of the softmax is empty (its output is never used)."""
        keys = key_mask.shape[1]
        causal = torch.ones(queries, keys, dtype=torch.bool, device=key_mask.device).tril(keys - queries)
        self_ = torch.zeros_like(causal)
        self_[torch.arange(queries), torch.arange(keys - queries, keys)] = True
        return (key_mask[:, None, None, :] & causal) | self_

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T) ids, optional (B, T) mask of real tokens (left padding) → (B, T, V) logits."""
        B, T = ids.shape
        if T > self.config.context_length:
            raise ValueError(f"{T} tokens exceed the context of {self.config.context_length}; crop the input")
        positions = positions_of(mask, B, T, ids.device)
        attn_mask = None if mask is None else self._padding_mask(mask, T)
        return self.head(self._run(ids, positions, attn_mask, None))

    # --- cached decoding (see genlab.sampling.decoding) ------------------------------------------
    def prefill(self, ids: Tensor, mask: Tensor | None) -> tuple[Tensor, KVCache]:
        B, T = ids.shape
        c = self.config
        cache = KVCache(c.num_layers, B, c.num_heads, c.context_length, c.embed_dim // c.num_heads,
                        like=self.tok_emb.weight)  # fmt: skip
        positions = positions_of(mask, B, T, ids.device)
        attn_mask = None
        if mask is not None:
            cache.mask = torch.zeros(B, c.context_length, dtype=torch.bool, device=ids.device)
            cache.mask[:, :T] = mask
            attn_mask = self._padding_mask(mask, T)
        hidden = self._run(ids, positions, attn_mask, cache)
        cache.length = T
        cache.positions = positions[:, -1] + 1
        return self.head(hidden[:, -1]), cache

    def step(self, ids: Tensor, cache: KVCache) -> Tensor:
        attn_mask = None
        if cache.mask is not None:
            cache.mask[:, cache.length] = True
            attn_mask = cache.mask[:, None, None, : cache.length + 1]
        hidden = self._run(ids[:, None], cache.positions[:, None], attn_mask, cache)
        cache.length += 1
        cache.positions = cache.positions + 1
        return self.head(hidden[:, -1])
