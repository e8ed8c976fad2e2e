"""Story measures for `story_quality.py` that are independent of what the engine uses to choose text.

The engine picks and judges its text with lemminflect lemmas and scikit-learn's stop words (lexical
recall), MiniLM cosine similarity, and the sentence gate's rules about the writing
(`agents/adherence.py`, `agents/technical.py`). A benchmark that measured with the same tools would
reward the engine for optimising its own yardstick, so none of them is used here:

- `premise_recall(text, premise)`: the share of the premise's distinct content words found in the
  text, matched by Snowball (English) stems, with a stop-word list of this module's own. Snowball
  strips suffixes ("letters" meets "letter", "teaches" meets "teach") but knows no irregular forms
  ("found" does not meet "find").
- `writing_talk_sentences(text)` / `writing_talk_rate(text)`: sentences that talk about the writing,
  the task or the reader, or answer as an assistant would, by a named rule list written for the
  benchmark (`WRITING_TALK_RULES`), plus heading lines ("Scene 2:", "Title: ...", "(word count: 150)").
- `distinct_n(text, n)`, `repeated_4gram_rate(text)`: lexical diversity and repetition.
- `perplexity(generator, text)`: perplexity of the text under the embedded model, teacher forced
  (the builtin runtime's `Llama.forward`, no emotion context: the base model).
- `about_premise_probability(generator, text, premise)`: the model's own yes/no judgement, P(Yes)
  of its next token after "Story: ...\\n\\nIs this story about: PREMISE? Answer Yes or No.";
  `premise_pmi(generator, text, premise)`: how much the story raises the model's expectation of
  the premise (its mean token log-probability after "Story: ...\\n\\nThis story is about:" less the
  same after an empty story). `judge_calibration` says how well either separates matched (text,
  premise) pairs from shuffled ones; on the labelled openings the yes/no question barely does (AUC
  0.63) and the PMI does (0.94), so the benchmark reports both.
- `bootstrap_ci(values)`: mean and 95% percentile-bootstrap interval.

Everything but the model measures is a pure function of its text arguments.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np

# ---- premise recall -----------------------------------------------------------------------------

# function words, pronouns, auxiliaries and a few verbs too light to carry a premise ("has to",
# "gets"); written for this benchmark, short on purpose: anything not listed counts as content
STOP_WORDS = frozenset(
    """a an the and or but nor so yet if then than that this these those there here of in on at to
    for from by with without into onto over under about above below after before during while
    until since through across against among around between beyond near off out up down upon
    within toward towards as like is are was were be been being am do does did doing done have has
    had having will would shall should can could may might must i me my mine myself we us our ours
    you your yours he him his himself she her hers herself it its itself they them their theirs
    who whom whose which what when where why how all any both each every either neither some such
    no not only own same too very just also again ever even still more most other another one
    ones get gets got make makes made let lets s t d ll re ve m""".split()
)
_WORD = re.compile(r"[a-z]+")


@cache
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower().replace("’", "'")) if len(w) > 1 and w not in STOP_WORDS]


def content_stems(text: str, *, compounds: bool = False) -> set[str]:
    """The Snowball stems of the text's content words (lower-cased; stop words and one-letter words
    out). `compounds`: also the stems of each two adjacent words written as one, so that a text's
    "bee keeper" meets a premise's "beekeeper"."""
    words = _content_words(text)
    stems = set(_stemmer().stemWords(words))
    if compounds:
        stems.update(_stemmer().stemWords([a + b for a, b in zip(words, words[1:])]))
    return stems


def premise_recall(text: str, premise: str) -> float:
    """The share of the premise's distinct content-word stems that occur in the text, alone or as
    two adjacent words written together (1.0 for a premise without content words: nothing to miss)."""
    wanted = content_stems(premise)
    if not wanted:
        return 1.0
    return len(wanted & content_stems(text, compounds=True)) / len(wanted)


def missing_premise_words(text: str, premise: str) -> list[str]:
    """The premise's content words whose stem the text never uses, in order (for reading a miss)."""
    have = content_stems(text, compounds=True)
    out = []
    for w in _WORD.findall(premise.lower()):
        if len(w) > 1 and w not in STOP_WORDS and _stemmer().stemWord(w) not in have and w not in out:
            out.append(w)
    return out


# ---- sentences about the writing ---------------------------------------------------------------

# What a writer's noun for the work looks like ("the scene", "this passage", "my draft").
_WORK = (
    r"(?:scene|story|stories|piece|passage|excerpt|paragraph|sentence|chapter|narrative|storyline|text|draft"
    r"|version|introduction|intro|ending|opening|conclusion|section|plot|prompt|premise|outline|rewrite|revision"
    r"|edit|edits|expansion|continuation|summary|response|answer|work|writing|tale|picture|image)"
)
# Verbs a critic uses of a work ("the story explores", "this piece highlights").
_CRITIC_VERB = (
    r"(?:explores?|highlights?|showcases?|captures?|depicts?|conveys?|combines?|portrays?|illustrates?|delves?"
    r"|focuses|focus|emphasi[sz]es|reflects|features|opens with|begins with|starts with|ends with|tells (?:a|the)"
    r"|takes (?:a|the) reader|invites|reminds us|offers|provides|demonstrates|sets the (?:tone|stage)|weaves"
    r"|switches|climaxes|shifts|revolves|centers|centres|is about|is set|feels like|could (?:also )?(?:start|begin)"
    r"|goes on|is now|was written|contrasts)"
)

# Nouns for the parts of a text a writer works on ("I added a descriptive phrase", "a new idea").
_CRAFT = (
    r"(?:phrase|sentence|word|detail|description|dialogue|paragraph|line|element|idea|metaphor|imagery|tone"
    r"|transition|hook|scene|theme|character|twist|introduction|ending|opening|version|draft|story|chapter"
    r"|section|text|passage|excerpt|plot|narrative|continuation)s?"
)

# (name, pattern): each rule says what it catches; a sentence is writing talk when any rule matches.
# Tuned only on the even-numbered lines of tests/data/meta_sentences.jsonl (the odd ones are the test).
WRITING_TALK_RULES: list[tuple[str, str]] = [
    ("assistant: AI self-reference", r"\bas an (?:ai|a\.i\.|assistant|language model)\b|\blanguage model\b"),
    (
        "assistant: pleasantries to a user",
        r"\bi hope (?:you|this|that|it)\b|\blet me know\b|\bfeel free\b|\bi'?m glad you\b|\bhappy to help\b"
        r"|\bthank you for (?:reading|asking|your|the opportunity)\b|^(?:hi|hello) there\b"
        r"|^welcome[.!]|^(?:sure|certainly|of course|absolutely)!",
    ),
    (
        "assistant: agreeing with a user",
        r"\byou(?:'re| are) (?:absolutely |so |quite )?right\b|\byou have successfully\b"
        r"|\bexactly as you (?:want|wanted|asked)\b|\bas you requested\b"
        r"|\byou(?:'ve| have) (?:written|captured|created|distilled|crafted)\b",
    ),
    (
        "reader address: your work",
        r"\byour (?:favou?rite \w+|request|feedback|writing|draft|version|text|readers?|audience|characters?"
        r"|protagonist|plot|scene|narrative|storytelling)\b",
    ),
    (
        "assistant: offering a text",
        r"^here(?:'s| is| are) (?:\w+ ){0,5}?" + _WORK + r"s?\b|^as requested\b"
        r"|\bi'?ve (?:re)?(?:created|written|crafted|rewritten|revised|edited|expanded|added|included|made|kept"
        r"|tried) (?:\w+ ){0,3}?(?:" + _CRAFT + r"|for you)\b",
    ),
    (
        "writer: first person about the writing",
        r"\b(?:my|our) (?:latest |previous |original |new |first |final )?(?:written )?(?!work\b)" + _WORK + r"s?\b"
        r"|\bi(?:'m| am|'ll| will) (?:just )?(?:be )?(?:writing|rewriting|revising|editing|introducing|adding"
        r"|refining|polishing|continuing|expanding|crafting|summari[sz]ing) (?:\w+ ){0,3}?" + _CRAFT + r"\b"
        r"|\bi'll (?:just )?(?:edit|rewrite|revise|refine|make sure|polish)\b"
        r"|\bi (?:added|introduced|included|changed|removed|replaced|rewrote|revised|edited|tweaked|chose|used)"
        r" (?:\w+ ){0,3}?" + _CRAFT + r"\b"
        r"|\b" + _WORK + r" (?:that )?i (?:provided|wrote|gave|shared)\b|\bi must admit that my\b",
    ),
    (
        "critic: the work as the subject",
        r"^(?:it (?:starts|begins|opens|ends) with (?:a|an|the)|this|the|that|my|our|in this|in the) (?:\w+ ){0,2}?"
        + _WORK
        + r"s?,? (?:\w+ ){0,2}?"
        + _CRITIC_VERB
        + r"\b",
    ),
    (
        "critic: in the scene / excerpt",
        r"^in (?:this|the|my|our|that) (?:(?:first|second|third|fourth|fifth|next|final|last|opening|closing"
        r"|previous|following|latest) )?(?:scene|excerpt|passage|paragraph|chapter|section|version|draft|story"
        r"|rewrite|piece|narrative)\b(?! (?:he|she|they|we|i|you|his|her|their|my|our|of (?:his|her|their|my|our))\b)"
        r"|^in conclusion\b|\bin (?:the|this) (?:excerpt|passage) provided\b",
    ),
    (
        "critic: craft vocabulary",
        r"\bthe (?:original|revised|rewritten|edited|new) (?:" + _WORK[3:-1] + r")\b"
        r"|\b(?:the|a|our) (?:readers?|narrator|protagonist|main character)\b(?! (?:said|asked|"
        r"whispered|smiled|nodded|walked|looked))|\bthemes? of\b|\bstory ?telling\b|\bemotional (?:depth|tone|arc"
        r"|impact|atmosphere)\b|\bthe (?:pacing|imagery|narrative|storyline)\b|\bword count\b"
        r"|\b\d+ words\b|\bgrammar\b|\bpunctuation\b|\bspell ?check\b|\bminor tweaks\b|\bscene \d+\b"
        r"|\b(?:this|the) (?:fictional|literary) \w+|\bcharacters? (?:development|arc)\b"
        r"|\b(?:emotive|descriptive|figurative|vivid|sensory) (?:language|details?|imagery)\b"
        r"|\bthe (?:sentence|phrase|word|line) \"|\bthe (?:end|beginning|start|middle|rest) of the (?:scene|story"
        r"|chapter|paragraph|passage|excerpt)\b|\bwe(?:'ve| have) (?:built|created|written|added|crafted)\b"
        r"|\b(?:coming |going |getting )?back to the (?:page|draft|prompt)\b",
    ),
    (
        "critic: a tale / story of",
        r"^(?:it|this|that) (?:is|was|feels like) (?:a|an|the) (?:\w+ ){0,3}?(?:tale|story|narrative|piece"
        r"|storyline|account) (?:of|about|that)\b|^(?:a|an) (?:\w+ ){0,3}?(?:story|tale) (?:about|of) "
        r"(?:\w+ ){0,4}?(?:and|against|characters?)\b",
    ),
    (
        "heading: a label line",
        r"^(?:#+ |\*\*)|^(?:scene|chapter|part|act|episode|section)\s+(?:\d+|[ivx]+|one|two|three|four|five|six"
        r"|seven|eight|nine|ten)\b\s*(?:[:.\-–—]|$)|^(?:the )?(?:title|premise|setting|summary|synopsis|introduction"
        r"|conclusion|moral|theme|themes|epilogue|prologue|note|characters|plot|word count|story transition"
        r"|narrative summary|story wrap up|change in plot direction|emotional arc|arc|tone|genre|ending|opening"
        r"|beginning|middle|end)\s*:|\(\s*(?:word count|words?)\b[^)]*\)|^\(?\d+ words\)?$",
    ),
]
# rules a line of dialogue often meets ("You're right," she said): not applied to quoted sentences
_DIALOGUE_LIKE = ("assistant: pleasantries to a user", "assistant: agreeing with a user", "reader address: your work")
_RULES = [(name, re.compile(p, re.I)) for name, p in WRITING_TALK_RULES]

_QUOTE_OPEN = "\"“‘'"
# a sentence ends at . ! ? (closing quotes and brackets kept with it) before whitespace
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’')\]]*\s+")


_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•>])\s+")


def split_into_sentences(text: str) -> list[str]:
    """Lines first (a heading is its own line; a list marker such as "1." or "-" is left out), then
    sentences within each line; a piece without a letter is no sentence."""
    out = []
    for line in text.splitlines():
        for s in _SENTENCE_END.split(_LIST_MARKER.sub("", line).strip()):
            s = s.strip()
            if s and re.search(r"[^\W\d_]", s):
                out.append(s)
    return out


def _normalise(sentence: str) -> str:
    s = sentence.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return _LIST_MARKER.sub("", s).strip()


def writing_talk_rule(sentence: str) -> str | None:
    """The name of the first rule that reads `sentence` as talk about the writing, or None.

    A sentence that opens with a quotation mark may be dialogue: the rules that dialogue meets too
    (`_DIALOGUE_LIKE`) are not applied to it; the others are (the model sometimes quotes its own
    commentary)."""
    s = _normalise(sentence)
    quoted = s[:1] in _QUOTE_OPEN
    for name, rule in _RULES:
        if quoted and name in _DIALOGUE_LIKE:
            continue
        if rule.search(s.strip(_QUOTE_OPEN + " ") if quoted else s):
            return name
    return None


def writing_talk_sentences(text: str) -> list[str]:
    """The text's sentences (and heading lines) that talk about the writing, in order."""
    return [s for s in split_into_sentences(text) if writing_talk_rule(s)]


def writing_talk_rate(text: str) -> float:
    """The share of the text's sentences that talk about the writing (0.0 for a text without sentences)."""
    sentences = split_into_sentences(text)
    return sum(writing_talk_rule(s) is not None for s in sentences) / len(sentences) if sentences else 0.0


# ---- diversity and repetition -------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def word_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("’", "'"))


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams / all n-grams of the lower-cased words (0.0 for a text shorter than n words)."""
    grams = _ngrams(word_tokens(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_4gram_rate(text: str) -> float:
    """The share of the text's 4-gram occurrences whose 4-gram occurs more than once in it."""
    counts = Counter(_ngrams(word_tokens(text), 4))
    total = sum(counts.values())
    return sum(c for c in counts.values() if c > 1) / total if total else 0.0


# ---- statistics ---------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float | None], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its 95% percentile-bootstrap interval over `n` resamples.
    None and NaN values are left out; (nan, nan, nan) when none is left."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """ROC AUC: the probability that a positive scores above a negative (ties count half)."""
    if not positives or not negatives:
        return math.nan
    p, q = np.asarray(positives, float)[:, None], np.asarray(negatives, float)[None, :]
    return float(((p > q).sum() + 0.5 * (p == q).sum()) / (p.size * q.size))


# ---- measures under the embedded model ----------------------------------------------------------


def _runtime(generator):
    """The builtin runtime's model and tokenizer (`BuiltinGenerator.batcher`): a benchmark may reach in."""
    batcher = getattr(generator, "batcher", None)
    if batcher is None or not hasattr(batcher, "model") or not hasattr(batcher, "tok"):
        raise TypeError(f"{type(generator).__name__} is not the builtin generator: no model to score text with")
    return batcher.model, batcher.tok


def perplexity(generator, text: str, window: int = 2048) -> float:
    """exp(mean negative log-likelihood) of the text's tokens, each predicted from the tokens before
    it (the first token of the text is context only), in windows of at most `window` tokens (and
    never more than the model's context); each window after the first is given the previous
    window's last half as context, so no token is predicted from nothing but its window start."""
    import torch
    import torch.nn.functional as F

    model, tok = _runtime(generator)
    ids = tok.encode(text)
    if len(ids) < 2:
        return math.nan
    window = max(2, min(window, model.config.context_length))
    nll, count, start = 0.0, 0, 1  # `start`: the first position still to predict
    with torch.inference_mode():
        while start < len(ids):
            end = min(len(ids), start + window // 2 if start > 1 else window)
            ctx_from = max(0, end - window)
            x = torch.tensor(ids[ctx_from:end], dtype=torch.long)[None]
            logits, _ = model(x)
            logp = F.log_softmax(logits[0].float(), dim=-1)  # row i predicts position ctx_from + i + 1
            targets = torch.tensor(ids[start:end])
            rows = torch.arange(start - 1 - ctx_from, end - 1 - ctx_from)
            nll -= float(logp[rows, targets].sum())
            count += end - start
            start = end
    return math.exp(nll / count)


JUDGE_WORDS = 250  # the judges read the story's first words: the premise should be plain by then


def judge_prompt(text: str, premise: str, words: int = JUDGE_WORDS) -> list[dict[str, str]]:
    """The yes/no question as a chat message."""
    story = " ".join(text.split()[:words])
    return [{"role": "user", "content": f"Story: {story}\n\nIs this story about: {premise.strip()}? Answer Yes or No."}]


def pmi_prefix(text: str, words: int = JUDGE_WORDS) -> str:
    """The plain-text frame the premise is scored in (with an empty story: the premise's prior)."""
    return f"Story: {' '.join(text.split()[:words])}\n\nThis story is about:"


def _answer_ids(tok) -> tuple[list[int], list[int]]:
    def one(word):
        ids = [i for i in tok.encode(word) if i != tok.bos_id]
        return ids[0] if len(ids) == 1 else None

    yes = sorted({i for i in (one("Yes"), one(" Yes")) if i is not None})
    no = sorted({i for i in (one("No"), one(" No")) if i is not None})
    if not yes or not no:
        raise ValueError("the tokenizer has no single token for Yes / No")
    return yes, no


class _PrefixScorer:
    """Next-token log-probabilities of token sequences that share long prefixes (one story, many
    premises): the KV cache of the last sequence is kept and cut back to the common prefix, as the
    batcher does with its kept caches; only `Llama.forward_packed`, the serving pass, is used."""

    def __init__(self, generator):
        from emotional_engine.lm.kv_cache import KVCache

        self.model, self.tok = _runtime(generator)
        self.cache = KVCache(self.model.config)

    def next_logprobs(self, ids: list[int]):
        """log p(next token | ids): (vocab,)."""
        import torch

        from emotional_engine.lm.kv_cache import Segment

        keep = 0
        for a, b in zip(self.cache.tokens, ids[:-1]):  # at least the last token is fed
            if a != b:
                break
            keep += 1
        self.cache.truncate(keep)
        feed = ids[keep:]
        with torch.inference_mode():
            logits = self.model.forward_packed(torch.tensor(feed, dtype=torch.long), [Segment(self.cache, len(feed))])
        return torch.log_softmax(logits[0].float(), dim=-1)

    def p_yes(self, messages: list[dict[str, str]]) -> float:
        """P(Yes) of the reply's first token, renormalised over the Yes and No tokens."""
        if not hasattr(self, "_answers"):
            self._answers = _answer_ids(self.tok)
        yes_ids, no_ids = self._answers
        p = self.next_logprobs(
            self.tok.encode(self.tok.apply_chat_template(messages, add_generation_prompt=True))
        ).exp()
        yes, no = float(p[yes_ids].sum()), float(p[no_ids].sum())
        return yes / (yes + no) if yes + no > 0 else 0.5

    def mean_logprob(self, prefix: str, continuation: str) -> float:
        """Mean log-probability of the continuation's tokens after the prefix (fed one token at a
        time after the shared prefix, so every position's distribution comes from the serving pass)."""
        head, tail = self.tok.encode(prefix), [i for i in self.tok.encode(continuation) if i != self.tok.bos_id]
        ids = head + tail
        return sum(float(self.next_logprobs(ids[:p])[ids[p]]) for p in range(len(head), len(ids))) / len(tail)


class _PMIScorer:
    """PMI of a premise with a story: one prefix scorer for stories, one for the premises' priors."""

    def __init__(self, generator):
        self.story, self.empty = _PrefixScorer(generator), _PrefixScorer(generator)
        self._prior: dict[str, float] = {}

    def __call__(self, text: str, premise: str) -> float:
        cont = " " + premise.strip()
        if cont not in self._prior:
            self._prior[cont] = self.empty.mean_logprob(pmi_prefix(""), cont)
        return self.story.mean_logprob(pmi_prefix(text), cont) - self._prior[cont]


def about_premise_probability(generator, text: str, premise: str) -> float:
    """The embedded model's P(Yes) to "Is this story about: PREMISE? Answer Yes or No." after the
    text's first `JUDGE_WORDS` words, renormalised over the Yes and No tokens (with and without a
    leading space). Weak with the 135M model: on the hand-labelled openings
    (tests/data/adherence_openings.jsonl) it tells an on-premise opening's own premise from the
    other five at AUC 0.63, and ranks on-premise openings below drifted ones (AUC 0.40)."""
    return _PrefixScorer(generator).p_yes(judge_prompt(text, premise))


def premise_pmi(generator, text: str, premise: str) -> float:
    """How much the story makes the model expect the premise: the premise's mean token
    log-probability after "Story: <first JUDGE_WORDS words>\n\nThis story is about:" less the same
    after an empty story (pointwise mutual information per token, in nats; > 0: the story raises
    it). On the labelled openings it tells an on-premise opening's own premise from the other
    five at AUC 0.94, and on-premise openings from drifted ones at 0.91."""
    return _PMIScorer(generator)(text, premise)


def _yes_no_judge(generator):
    scorer = _PrefixScorer(generator)
    return lambda text, premise: scorer.p_yes(judge_prompt(text, premise))


JUDGES = {"p_yes": _yes_no_judge, "pmi": _PMIScorer}


def judge_calibration(
    generator, texts: Sequence[str], premises: Sequence[str], *, judge: str = "p_yes", quantile: float = 0.9
) -> dict[str, object]:
    """How well a judge (`JUDGES`: "p_yes", the yes/no question; "pmi", `premise_pmi`) tells each
    text's own premise from others': its score for every matched pair (text i, premise i) and for
    every shuffled pair (text i, premise j) with a different premise. Returns `auc` (matched vs
    shuffled), `threshold` (the shuffled pairs' `quantile`: a text passes when its score is above
    it), the `matched` scores (one per text), the `shuffled` ones and the same per text
    (`shuffled_by_text`)."""
    score = JUDGES[judge](generator)
    distinct = list(dict.fromkeys(premises))
    matched, by_text = [], []
    for text, own in zip(texts, premises):
        matched.append(score(text, own))
        by_text.append([score(text, p) for p in distinct if p != own])
    shuffled = [p for ps in by_text for p in ps]
    return {
        "judge": judge,
        "auc": auc(matched, shuffled),
        "threshold": float(np.quantile(shuffled, quantile)) if shuffled else math.nan,
        "matched": matched,
        "shuffled": shuffled,
        "shuffled_by_text": by_text,
    }
