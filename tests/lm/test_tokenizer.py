"""BPETokenizer (built from GGUF tokenizer data) and StreamDecoder, on a tiny byte-level vocabulary."""

from __future__ import annotations

import dataclasses

import pytest

from emotional_engine.lm.tokenizer import BPETokenizer, StreamDecoder
from tiny_lm import VOCAB_SIZE

TEXTS = [
    "hello world",
    "the other there, then the end.",
    "naïve café, crème brûlée — déjà vu",
    "emoji 😀🎉👍🏽 and flags 🇯🇵; CJK 日本語テキスト; math ∑∫√",
    "tabs\tand\nnewlines\r\n  double  spaces ",
    "Ünïcödé ß ø Å ł ğ ş",
    "",
]


def test_vocab_matches_the_model(tokenizer, model):
    assert tokenizer.vocab_size == VOCAB_SIZE == model.config.vocab_size


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == text


def test_merges_are_applied(tokenizer):
    ids = tokenizer.encode("the")
    assert len(ids) == 2 and tokenizer.token_text(ids[1]) == "he"  # "t" + merged "he"
    ids = tokenizer.encode(" the")
    assert [tokenizer.token_text(i) for i in ids] == ["Ġthe"]  # the merge chain Ġ t -> Ġt he
    # bytes without merges map one to one to their ids
    assert tokenizer.encode("é") == list("é".encode())


@pytest.mark.parametrize("text", TEXTS)
def test_stream_decoder_pieces_join_to_the_full_decode(tokenizer, text):
    ids = tokenizer.encode(text)
    dec = StreamDecoder(tokenizer)
    pieces = [dec.push(i) for i in ids]
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)


def test_stream_decoder_holds_back_split_characters(tokenizer):
    ids = tokenizer.encode("😀")
    assert len(ids) == 4  # four bytes, four byte-level tokens
    dec = StreamDecoder(tokenizer)
    assert [dec.push(i) for i in ids] == ["", "", "", "😀"]


def test_stream_decoder_skips_special_tokens(tokenizer):
    im_end = tokenizer.encode("<|im_end|>")
    ids = tokenizer.encode("hé") + im_end + tokenizer.encode("llo")
    dec = StreamDecoder(tokenizer)
    assert "".join(dec.push(i) for i in ids) == "héllo"


def test_special_tokens_are_single_ids(tokenizer, tok_data):
    start, end = tok_data.tokens.index("<|im_start|>"), tok_data.tokens.index("<|im_end|>")
    ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == start and ids[-1] == end
    assert ids.count(start) == 1 and ids.count(end) == 1
    assert ids[1:-1] == tokenizer.encode("user\nhi")
    assert tokenizer.special_ids == {start, end, tok_data.tokens.index("<|endoftext|>")}
    assert tokenizer.eos_ids == {end}
    assert tokenizer.decode(ids) == "user\nhi"
    assert tokenizer.decode(ids, skip_special=False) == "<|im_start|>user\nhi<|im_end|>"


def test_chatml_template(tokenizer):
    msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi 😀"}]
    text = tokenizer.apply_chat_template(msgs)
    assert text == "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi 😀<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.apply_chat_template(msgs, add_generation_prompt=False) == text.removesuffix(
        "<|im_start|>assistant\n"
    )
    ids = tokenizer.encode(text)
    assert ids.count(tokenizer.encode("<|im_start|>")[0]) == 3


def test_template_from_the_file_and_bos(tok_data):
    data = dataclasses.replace(
        tok_data,
        bos_id=tok_data.tokens.index("<|endoftext|>"),
        add_bos=True,
        chat_template="{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}{% endfor %}",  # noqa: E501
    )
    tok = BPETokenizer(data)
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "<|endoftext|>[user]x<|im_end|>"
    assert tok.encode("hi")[0] == data.bos_id and tok.decode(tok.encode("hi")) == "hi"


def test_template_raise_exception_is_a_value_error(tok_data):
    tok = BPETokenizer(dataclasses.replace(tok_data, chat_template="{{ raise_exception('no system role') }}"))
    with pytest.raises(ValueError, match="no system role"):
        tok.apply_chat_template([{"role": "system", "content": "x"}])


def _pieces(data, pre: str, text: str) -> list[str]:
    tok = BPETokenizer(dataclasses.replace(data, pre=pre))
    return [p for p, _ in tok._tk.pre_tokenizer.pre_tokenize_str(text)]


def test_pre_tokenizers_follow_llama_cpp_names(tok_data, caplog):
    # SmolLM2 ("smollm"): every digit alone, then GPT-2's split
    assert _pieces(tok_data, "smollm", "x 12345") == ["x", "Ġ", "1", "2", "3", "4", "5"]
    # Llama 3 ("llama-bpe"): digits in groups of three, case-insensitive contractions
    assert _pieces(tok_data, "llama-bpe", "I'M 12345") == ["I", "'M", "Ġ", "123", "45"]
    # an unknown name falls back to GPT-2's split and says so
    assert _pieces(tok_data, "mystery", "a 12345") == ["a", "Ġ12345"]
    assert "mystery" in caplog.text


@pytest.mark.model
def test_text_in_messages_never_encodes_to_a_special_token_of_the_embedded_tokenizer(embedded_path):
    """Every control token of the embedded model, written into a message (a cast name, a premise),
    stays text: the rendered prompt holds exactly the template's own special tokens."""
    from emotional_engine.lm.gguf import read_metadata

    tok = BPETokenizer(read_metadata(embedded_path)[1])
    assert len(tok.special_ids) > 10

    def specials(content: str) -> list[int]:
        text = tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": content}])
        return [i for i in tok.encode(text) if i in tok.special_ids]

    plain = specials("Anna and Ben")
    for i in sorted(tok.special_ids):
        word = tok.token_text(i)
        assert specials(f"Anna {word} and{word}Ben") == plain, word
        assert word.replace("\u200b", "") in tok.decode(tok.encode(tok.defuse(word))).replace("\u200b", "")
