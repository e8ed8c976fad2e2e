"""Rebuild the embedded model's shipped logit-steering table (`emotion/data/token-affect-*.npz`) after
the emotion head or the embedded tokenizer changes:

    python -m emotional_engine.training.steering_table

It reads the embedded model's vocabulary with the language-model runtime, so it lives here rather
than beside the runtime part of steering (`emotion.steering`), which imports nothing of `lm`.
"""

from __future__ import annotations

from emotional_engine.emotion.model import HEAD_PATH, EmotionModel
from emotional_engine.emotion.steering import SHIPPED_DIR, TokenAffect, table_key
from emotional_engine.lm.gguf import embedded_model_path, load_gguf


def main() -> None:
    """Rebuild the embedded model's shipped table (after the emotion head changes)."""
    g, _ = load_gguf(embedded_model_path())
    table = TokenAffect.build(list(g.tokenizer.tokens), EmotionModel.load())
    for old in SHIPPED_DIR.glob("token-affect-*.npz"):
        old.unlink()
    path = SHIPPED_DIR / f"token-affect-{table_key(list(g.tokenizer.tokens), HEAD_PATH)}.npz"
    table.save(path)
    print(f"wrote {path} ({len(table.ids)} word-start tokens)")


if __name__ == "__main__":
    main()
