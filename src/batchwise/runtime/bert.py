"""A compact BERT encoder in plain PyTorch, for the built-in MiniLM model.

Why not ``transformers``: importing its BERT takes ~3.5 s of CPU here (most of a
worker's start-up), and a batch job restarts workers whenever one is killed or
added. This module loads the same safetensors weights and the same tokenizer file
(``tokenizers``) in ~0.1 s after ``import torch`` and computes the same function
(eval mode: no dropout); ``tests/batch/test_bert.py`` checks it against
``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


class Bert:
    """BERT encoder (absolute positions, GELU, post-LayerNorm) from a model folder."""

    def __init__(self, folder: str | Path, max_length: int = 128) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.hidden = int(cfg["hidden_size"])  # a constant, so the graph exports to ONNX
        self.w: dict[str, torch.Tensor] = load_file(str(folder / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=int(cfg.get("pad_token_id", 0)))

    def cast_projections(self, dtype: torch.dtype) -> None:
        """Store the encoder's projection matrices in ``dtype`` (e.g. bfloat16).

        Why only those: they are the matmuls (almost all the work) and, under autocast,
        would otherwise be cast on every call; embeddings, biases and LayerNorm
        parameters stay fp32, so the additions and normalisations keep their precision.
        """
        for name, t in self.w.items():
            if name.startswith("encoder.") and name.endswith(".weight") and t.dim() == 2:
                self.w[name] = t.to(dtype)

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w = self.w
        return F.layer_norm(x, (self.hidden,), w[f"{name}.weight"], w[f"{name}.bias"], self.eps)

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids, attention mask and token types, padded to the longest text."""
        enc = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        types = torch.tensor([e.type_ids for e in enc])
        return ids, mask, types

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts → last hidden states ``(batch, tokens, hidden)`` and the attention mask."""
        ids, mask, types = self.tokenize(texts)
        return self.hidden_states(ids, mask, types), mask

    def hidden_states(
        self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor
    ) -> torch.Tensor:
        """The encoder on token tensors (what the ONNX export traces)."""
        w = self.w
        pos = torch.arange(ids.shape[1])
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][pos]
             + w["embeddings.token_type_embeddings.weight"][types])  # fmt: skip
        x = self._ln(x, "embeddings.LayerNorm")
        b, t, h = x.shape
        # Additive mask: padded keys get -inf-like scores for every query.
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def heads(y: torch.Tensor) -> torch.Tensor:
                return y.view(b, t, self.heads, h // self.heads).transpose(1, 2)

            q = heads(self._lin(x, f"{p}.attention.self.query"))
            k = heads(self._lin(x, f"{p}.attention.self.key"))
            v = heads(self._lin(x, f"{p}.attention.self.value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            a = a.transpose(1, 2).reshape(b, t, h)
            x = self._ln(self._lin(a, f"{p}.attention.output.dense") + x,
                         f"{p}.attention.output.LayerNorm")  # fmt: skip
            f = F.gelu(self._lin(x, f"{p}.intermediate.dense"))
            x = self._ln(self._lin(f, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x

    def pooled(
        self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Mean over real tokens, L2-normalised (sentence-transformers' pooling)."""
        hidden = self.hidden_states(ids, mask, types).float()  # pooled in fp32 (autocast)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(emb, dim=1) if normalize else emb

    def mean_pooled(self, texts: list[str], normalize: bool = True) -> Any:
        """Sentence embeddings of ``texts``."""
        with torch.inference_mode():
            return self.pooled(*self.tokenize(texts), normalize=normalize)
