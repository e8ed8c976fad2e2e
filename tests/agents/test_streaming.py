"""Sentences out of a stream of pieces: cut where the splitter cuts, paragraphs kept, the unfinished tail dropped."""

from emotional_engine.agents.streaming import SentenceStream
from fakes import Piece


async def pieces(text: str, size: int = 3):
    for i in range(0, len(text), size):
        yield Piece(text=text[i : i + size])


async def collect(stream: SentenceStream):
    out = []
    while (s := await stream.next_sentence()) is not None:
        out.append(s)
    return out


async def test_sentences_come_whole_whatever_the_piece_boundaries():
    text = 'She ran.  "Wait!" he called.\n\nThe tide   turned. It was late and'
    for size in (1, 2, 5, 100):
        got = await collect(SentenceStream(pieces(text, size)))
        assert [s.text for s in got] == ["She ran.", '"Wait!" he called.', "The tide turned."]
        assert [s.new_paragraph for s in got] == [False, False, True]


async def test_joined_sentences_rebuild_the_models_text():
    """Paragraphs and line breaks as the model wrote them: a session replays the text, and the runtime
    finds it in its cache only if it is the model's own."""
    got = await collect(SentenceStream(pieces("One. Two.\n\nThree.\nFour.  Five.\n \n Six.")))
    text = ""
    for s in got:
        text += s.joined_to(text)
    assert text == "One. Two.\n\nThree.\nFour. Five.\n\nSix."


async def test_fill_reads_only_as_far_as_asked():
    consumed = []

    async def tracked():
        async for p in pieces("A b. C d. E f. G h.", 1):
            consumed.append(p.text)
            yield p

    s = SentenceStream(tracked())
    await s.fill(2)
    assert s.buffered_text() == "A b. C d."
    assert "".join(consumed) == "A b. C d. E"  # the third sentence's first letter shows the second ended
    assert not s.finished


async def test_aclose_stops_the_source():
    closed = []

    async def source():
        try:
            for _ in range(100):
                yield Piece(text="Go on. ")
        finally:
            closed.append(True)

    s = SentenceStream(source())
    await s.fill(1)
    await s.aclose()
    assert closed == [True]
