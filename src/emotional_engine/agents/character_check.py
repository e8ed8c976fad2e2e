"""The character checker: follows every mention of the cast in a text and finds what contradicts the sheet.

A rule-based reader, small on purpose (spaCy is not installed; the rules are the product here):

- Mentions: full names and their parts ("Amara Okafor", "Amara", "Okafor"), honorific forms
  ("Tanaka-san", "Mama Otieno": the profile's forms of address around a cast name), aliases from
  the sheet, gendered pronouns, and unnamed people ("the woman", "a teacher") that pronouns may
  point to.
- Foreign/stray names: a person name (one any culture's generator knows) that is nobody in the
  cast. At a sentence start a word only counts when it is not an ordinary English word ("Will you
  come?", "Rose petals fell"). A capitalised unknown word followed by a speech verb ("Zorba said")
  counts too. A name after a place preposition ("in Rome", "moved to London") is a place.
- Pronouns (salience heuristic): a he/she pronoun refers to the most recent compatible candidate
  earlier in its sentence or in the previous sentence (further back, up to two more sentences, when
  that window holds nobody; later in the sentence when it opens with "When", "As", ...). Only when
  the window holds a cast member and nobody compatible is the pronoun wrong; it belongs to the most
  recent cast member. Pronouns inside quotation marks are not checked: dialogue talks about people
  outside the scene.
- The dead: death statements ("Kofi drowned", "Kofi's funeral", "the late Kofi") mark a character
  dead from that sentence on; a dead character (by name or resolved pronoun) that is the subject of
  an action verb later is acting, unless the sentence is a memory ("remembered", "used to", "photo").
- Traits and facts: a small antonym table for the sheet's traits ("kind" vs "cruel", "blind" vs
  "saw"), attributed to the nearest mention before the word; kinship ("her sister Kofi") against the
  sheet's relationships and what earlier scenes said, including the inverse (Kofi's sister cannot
  be his mother) and the relation word's gender against the character's pronouns.

`check` reads a text against the cast and the facts so far; `learn` adds a text's deaths and kinship
to the facts; `repair` fixes what a substitution can fix and names the sentences to regenerate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from emotional_engine.culture import CultureProfile
from emotional_engine.culture.lexicon import (
    SACRED_NAMES,
    after_a_place_preposition,
    all_person_names,
    culture_name_words,
    is_ordinary,
)
from emotional_engine.domain import Character
from emotional_engine.text import split_sentences

Kind = Literal["foreign_name", "wrong_pronoun", "dead_acting", "contradiction"]
Gender = Literal["f", "m"]

PRONOUNS: dict[str, Gender] = {
    "she": "f",
    "her": "f",
    "hers": "f",
    "herself": "f",
    "he": "m",
    "him": "m",
    "his": "m",
    "himself": "m",
}
SUBJECT_PRONOUNS = {"he", "she"}
SWAP = {"she": "he", "he": "she", "hers": "his", "herself": "himself", "himself": "herself", "him": "her"}

# people without a name that a pronoun may point to; None: either gender
PERSON_NOUNS: dict[str, Gender | None] = {
    **dict.fromkeys(
        "woman girl mother sister aunt grandmother grandma granny wife daughter niece queen lady "
        "landlady waitress actress nun bride widow policewoman princess mum mom mistress madam".split(),
        "f",
    ),
    **dict.fromkeys(
        "man boy father brother uncle grandfather grandpa husband son nephew king gentleman landlord "
        "waiter actor monk groom widower policeman fisherman prince dad sir".split(),
        "m",
    ),
    **dict.fromkeys(
        "teacher doctor stranger driver neighbour neighbor child baby nurse shopkeeper vendor officer "
        "guard soldier farmer student clerk boss chief elder guest traveller traveler merchant trader "
        "priest imam pastor someone somebody person customer passenger cook tailor baker pilot captain "
        "judge lawyer conductor owner manager coach player runner friend visitor seller healer "
        "midwife herder singer musician poet photographer journalist official caller guide vicar porter "
        "cashier janitor mechanic carpenter plumber nanny maid servant courier ranger sailor miner weaver "
        "potter hunter shepherd colleague classmate partner host usher referee chef barber hairdresser "
        "receptionist secretary inspector detective sergeant constable warden preacher rabbi teller "
        "patient survivor witness victim tourist pilgrim cousin".split(),
        None,
    ),
}
MR_MRS: dict[str, Gender] = {
    "Mr": "m",
    "Mrs": "f",
    "Ms": "f",
    "Miss": "f",
    "Mister": "m",
    "Madam": "f",
    "Sir": "m",
    "Lady": "f",
    "Lord": "m",
}
SUBORDINATORS = {
    "when",
    "as",
    "after",
    "before",
    "while",
    "although",
    "though",
    "once",
    "if",
    "because",
    "since",
    "until",
    "whenever",
}
# what only people do: an unknown capitalised word right before one of these is a person ("Zorba said")
HUMAN_VERBS = set(
    "said asked replied shouted whispered smiled laughed nodded sighed called answered frowned shrugged "
    "waved grinned cried wept told walked ran muttered".split()
)
NEGATIONS = {"not", "never", "no", "hardly", "nor", "without"}
NOT_NAMES = (
    set(
        "January February March April May June July August September October November December Monday "
        "Tuesday Wednesday Thursday Friday Saturday Sunday Christmas Easter English I".split()
    )
    | SACRED_NAMES
)

# --- traits and their contradictions (the TRAITS pool in agents.character, plus conditions users give)
ANTONYMS: dict[str, str] = {
    "curious": r"incurious|uninterested|indifferent",
    "stubborn": r"yielding|pliant|gave in at once|easily persuaded",
    "kind": r"cruel|cruelly|unkind|heartless|spiteful|callous",
    "proud": r"humble|meek|self-effacing",
    "patient": r"impatient|impatiently",
    "restless": r"calm and settled|content to sit|never fidgeted",
    "loyal": r"disloyal|treacherous|betrayed",
    "cautious": r"reckless|recklessly|careless|carelessly|rash",
    "generous": r"stingy|miserly|greedy|tight-fisted|mean-spirited",
    "quick-tempered": r"even-tempered|never lost (?:his|her|their) temper|placid",
    "honest": r"dishonest|lied|deceitful|liar",
    "secretive": r"open about everything|forthcoming|told everyone",
    "brave": r"cowardly|coward|cowered|fled in terror",
    "shy": r"bold|outgoing|brash|loudly introduced",
    "practical": r"impractical|head in the clouds",
    "dreamy": r"down-to-earth|hard-headed",
    "blind": r"saw|seen|watched|stared|glanced|gazed|spotted|caught sight|looked at|read the|read her|read his",
    "deaf": r"heard|overheard|listened",
    "mute": r"said|shouted|whispered|spoke|replied|answered|sang|called out",
}
# words near a contradiction that show it is none: a mute character "answered with her hands"
NOT_CONTRADICTED = {
    "mute": re.compile(r"\b(?:with (?:her|his|their) hands|in sign|signed|by signs?|in writing|wrote)\b")
}
_ANTONYM_RE = {t: re.compile(rf"\b(?:{p})\b", re.IGNORECASE) for t, p in ANTONYMS.items()}

# --- kinship: the word, its gender, its category; the category seen from the other side
KIN: dict[str, tuple[str, Gender | None]] = {
    "brother": ("sibling", "m"),
    "sister": ("sibling", "f"),
    "mother": ("parent", "f"),
    "father": ("parent", "m"),
    "mum": ("parent", "f"),
    "mom": ("parent", "f"),
    "dad": ("parent", "m"),
    "son": ("child", "m"),
    "daughter": ("child", "f"),
    "husband": ("spouse", "m"),
    "wife": ("spouse", "f"),
    "aunt": ("auncle", "f"),
    "uncle": ("auncle", "m"),
    "niece": ("nibling", "f"),
    "nephew": ("nibling", "m"),
    "cousin": ("cousin", None),
    "grandmother": ("grandparent", "f"),
    "grandfather": ("grandparent", "m"),
    "grandson": ("grandchild", "m"),
    "granddaughter": ("grandchild", "f"),
}
INVERSE = {
    "sibling": "sibling",
    "parent": "child",
    "child": "parent",
    "spouse": "spouse",
    "auncle": "nibling",
    "nibling": "auncle",
    "cousin": "cousin",
    "grandparent": "grandchild",
    "grandchild": "grandparent",
}
_KIN_WORDS = "|".join(KIN)
_KIN_ADJ = r"(?:(?:elder|older|younger|little|big|twin|baby|late|only)\s+)?"
_NAME = r"[A-Z][\w’'-]*"
_KIN_A = re.compile(
    rf"\b(?P<owner>{_NAME}(?:'s|’s)|[Hh]er|[Hh]is)\s+{_KIN_ADJ}(?P<rel>{_KIN_WORDS})\s*,?\s+(?P<name>{_NAME})"
)
_KIN_B = re.compile(rf"\b(?P<name>{_NAME}),\s+(?P<owner>{_NAME}(?:'s|’s)|her|his)\s+{_KIN_ADJ}(?P<rel>{_KIN_WORDS})\b")

# --- death and action
_DEATH_AFTER = re.compile(
    r"^(?:\s+[\w,]+){0,3}?\s+(?:died|drowned|perished|passed away|was killed|had been killed|was murdered|was dead|"
    r"had died|lay dead|was lost at sea|was executed|fell dead|was shot dead|succumbed|breathed (?:his|her|their) last|"
    r"was buried|was laid to rest)\b"
    # "Nomsa fell ill in the winter and died": a clause joined by "and", with nobody else named in it
    r"|^[^.;:A-Z]*?\band (?:then |later |soon )?(?:died|drowned|perished|passed away)\b"
)
_DEATH_BEFORE = re.compile(
    r"(?:death of|funeral of|grave of|the late|killed|buried|mourned|mourning)\s+$", re.IGNORECASE
)
_DEATH_POSSESSIVE = re.compile(r"^(?:'s|’s)\s+(?:death|funeral|grave|burial|body|coffin|tomb)\b")
MEMORY_CUES = re.compile(
    r"\b(?:remember\w*|recall\w*|memor(?:y|ies)|missed|mourn\w*|grave|photo\w*|portrait|picture|dream\w*|ghost|"
    r"used to|years ago|before (?:he|she|they) died|funeral|buried|would have|in life|spirit|prayed for|"
    r"had once|once had|the late|kept (?:his|her|their)|old letters?|voice in (?:her|his) head)\b",
    re.IGNORECASE,
)
IRREGULAR_PAST = set(
    "said went came took ran stood sat saw gave made held told spoke brought bought caught drove ate drank fought "
    "found flew forgot got grew hid hit kept knelt knew led left lit lost met paid put read rode rang rose sang sank "
    "sent set shook shot shut slept slid spoke spun stole struck swam swept swung taught tore threw understood woke "
    "wore won wrote began bent bit blew broke built chose dug drew fed fell felt hung heard laid lay meant sold sought "
    "spent split spread sprang stuck stung strode stank thought wept".split()
)
NOT_ACTION_ED = {
    "died",
    "drowned",
    "perished",
    "passed",
    "buried",
    "killed",
    "murdered",
    "mourned",
    "remembered",
    "missed",
    "loved",
    "named",
    "called",
    "dead",
    "lay",
    "rested",
    "used",
    "seemed",
}
SKIP_BEFORE_VERB = {
    "then",
    "also",
    "still",
    "suddenly",
    "finally",
    "just",
    "again",
    "slowly",
    "quickly",
    "quietly",
    "softly",
    "gently",
    "carefully",
    "now",
    "immediately",
    "silently",
}

# a known name right before one of these is part of a place: "Lenin Street", "Fort Jesus"
PLACE_NOUNS = set(
    "Street Road Avenue Square Park Station Market Bridge Hospital School Church Mosque Temple University "
    "Lake River Mountain Hill Bay Beach Island Airport Hotel Cafe Restaurant Prospekt Boulevard Lane "
    "Drive Way Plaza Palace Museum Tower Gate College Stadium Library Hall Memorial Valley".split()
)

_TOKEN = re.compile(r"[^\W\d_][\w’'-]*")
_QUOTES = re.compile(r"[\"“”]")


class Finding(BaseModel):
    kind: Kind
    character: str | None = Field(None, description="the cast member concerned")
    span: str = Field(description="the offending words")
    start: int = Field(description="character offset of the span in the text")
    sentence: str
    sentence_index: int
    reason: str
    fix: str | None = Field(None, description="the replacement a substitution repair uses (names, pronouns)")


class StoryFacts(BaseModel):
    """What earlier scenes established: who is dead, and kinship ('B is A's sister': kin[A][B] = 'sister')."""

    dead: list[str] = Field(default_factory=list)
    kin: dict[str, dict[str, str]] = Field(default_factory=dict)


class CheckResult(BaseModel):
    findings: list[Finding]
    mentions: dict[str, int] = Field(description="cast member -> mentions (names, aliases, address, pronouns)")
    total_mentions: int
    agreeing_mentions: int
    character_consistency: float = Field(ge=0.0, le=1.0)
    sentences_of: dict[str, list[int]] = Field(description="cast member -> indices of sentences that mention them")
    sentences: list[str]
    learned: StoryFacts


@dataclass
class Mention:
    start: int
    end: int
    sentence: int
    kind: Literal["name", "pronoun", "noun", "stray"]
    members: tuple[str, ...] = ()
    gender: Gender | None = None
    quoted: bool = False
    word: str = ""
    resolved: str | None = None  # pronouns: the cast member they refer to
    referent: bool = False  # pronouns: resolved to anyone (a cast member, a stray, an unnamed person)
    stray_ref: str | None = None  # pronouns resolved to a stray name
    bad: bool = False


@dataclass
class _Sentence:
    text: str
    start: int
    quoted: list[tuple[int, int]] = field(default_factory=list)  # absolute spans inside quotation marks


def _gender(pronouns: str) -> Gender | None:
    first = pronouns.split("/")[0].strip().lower()
    return PRONOUNS.get(first) if first in ("she", "he") else None


def _sentences(text: str) -> list[_Sentence]:
    out, pos = [], 0
    for part in split_sentences(text, normalize=False):
        if not part.strip():
            continue
        start = text.find(part, pos)
        lead = len(part) - len(part.lstrip())
        s = _Sentence(part.strip(), start + lead)
        pos = start + len(part)
        marks = [s.start + m.start() for m in _QUOTES.finditer(s.text)]
        s.quoted = [(marks[i], marks[i + 1]) for i in range(0, len(marks) - 1, 2)]
        out.append(s)
    return out


def _address_terms(profile: CultureProfile | None) -> tuple[set[str], set[str]]:
    """(prefix words, hyphen suffixes) from the profile's forms of address: 'Bibi / Babu' -> Bibi, Babu; '-san'."""
    prefixes, suffixes = set(MR_MRS), set()
    for form in profile.address if profile else []:
        for term in re.split(r"\s*[/,]\s*|\s+-\s+", re.sub(r"\(.*?\)", "", form.term)):
            for word in term.split():
                if word.startswith("-"):
                    suffixes.add(word.lstrip("-").lower())
                elif word[:1].isupper():
                    prefixes.add(word)
    return prefixes, suffixes


def _settings_words(profile: CultureProfile | None) -> set[str]:
    if profile is None:
        return set()
    s = profile.settings
    return {w for item in [*s.places, *s.foods, *s.festivals, *s.objects] for w in _TOKEN.findall(item)}


class CharacterChecker:
    """Reads texts against a cast; `facts` carries what earlier scenes established."""

    def __init__(
        self,
        cast: list[Character],
        profile: CultureProfile | None = None,
        facts: StoryFacts | None = None,
        person_names: set[str] | None = None,
    ):
        self.cast = cast
        self.profile = profile
        self.by_name = {c.name: c for c in cast}
        self.facts = facts or StoryFacts()
        self.gender = {c.name: _gender(c.pronouns) for c in cast}
        self.parts: dict[str, set[str]] = {}  # a word that names someone -> the cast members it may be
        self.phrases: list[tuple[tuple[str, ...], str]] = []  # aliases of several words: ("Mama", "Otieno")
        for c in cast:
            for w in c.name.split():
                self.parts.setdefault(w, set()).add(c.name)
            for alias in c.aliases:
                words = tuple(alias.split())
                if len(words) == 1:
                    self.parts.setdefault(words[0], set()).add(c.name)
                elif words:  # a blank alias would match before every word, and mentions() would never move on
                    self.phrases.append((words, c.name))
        self.prefixes, self.suffixes = _address_terms(profile)
        self.not_names = NOT_NAMES | culture_name_words() | _settings_words(profile) | self.prefixes
        self.person_names = person_names if person_names is not None else all_person_names()

    # -- mentions ----------------------------------------------------------------------------------------
    def _member_of(self, word: str) -> tuple[str, ...]:
        if word in self.parts:
            return tuple(sorted(self.parts[word]))
        base, _, suffix = word.partition("-")
        if suffix and base in self.parts:  # Tanaka-san, Ade-mi
            return tuple(sorted(self.parts[base]))
        return ()

    def _is_stray(self, word: str, tokens: list[str], i: int, sentence_start: bool, possessive: bool = False) -> bool:
        base = word.split("-")[0] if word.partition("-")[2].lower() in self.suffixes else word
        if base in self.not_names or not base[:1].isupper() or base.isupper() and len(base) > 1:
            return False
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        known = base in self.person_names
        if not known:  # an unknown word is a person only when it speaks or acts like one: "Zorba said"
            return nxt.lower() in HUMAN_VERBS and not is_ordinary(base)
        if not possessive and nxt.lower() not in HUMAN_VERBS and after_a_place_preposition(tokens[max(0, i - 2) : i]):
            return False  # a city that is a name too: "in Rome", "moved to London"
        prev = tokens[i - 1] if i else ""
        if prev.lower() == "the":
            return False  # "the Buddha", "the Rose Choir": a title or a thing named after someone
        if (
            nxt in PLACE_NOUNS
            or not sentence_start
            and prev[:1].isupper()
            and not is_ordinary(prev, False)
            and prev not in self.person_names
            and prev not in self.parts
            and prev not in self.prefixes
        ):
            return False  # part of a place: "Lenin Street", "Hoi An"
        if is_ordinary(base, inflected=False):
            # an ordinary word ("Rose", "Hope") is a name only mid-sentence, alone (not "a Rose Garden")
            return not sentence_start and not nxt[:1].isupper() and prev.lower() not in ("a", "an")
        return True

    def mentions(self, sentences: list[_Sentence]) -> list[Mention]:
        out: list[Mention] = []
        for si, s in enumerate(sentences):
            toks = list(_TOKEN.finditer(s.text))
            words = [re.sub(r"(?:'s|’s|'|’)$", "", t.group()) for t in toks]
            i = 0
            while i < len(toks):
                w, t = words[i], toks[i]
                start = s.start + t.start()
                quoted = any(a < start < b for a, b in s.quoted)
                members = self._member_of(w)
                low = w.lower()
                phrase = next(
                    ((n, who) for ph, who in self.phrases if tuple(words[i : i + (n := len(ph))]) == ph), None
                )
                if phrase:
                    n, who = phrase
                    end = s.start + toks[i + n - 1].start() + len(words[i + n - 1])
                    out.append(
                        Mention(start, end, si, "name", (who,), self.gender[who], quoted, " ".join(words[i : i + n]))
                    )
                    i += n
                    continue
                if members:
                    j = i + 1  # "Amara Okafor" is one mention
                    while j < len(toks) and self._member_of(words[j]) and set(self._member_of(words[j])) & set(members):
                        members = tuple(sorted(set(members) & set(self._member_of(words[j])))) or members
                        j += 1
                    end = s.start + toks[j - 1].start() + len(words[j - 1])
                    g = {self.gender[m] for m in members}
                    out.append(Mention(start, end, si, "name", members, g.pop() if len(g) == 1 else None, quoted, w))
                    i = j
                    continue
                if low in PRONOUNS:
                    out.append(Mention(start, start + len(w), si, "pronoun", (), PRONOUNS[low], quoted, w))
                elif low in PERSON_NOUNS or w in MR_MRS:
                    out.append(
                        Mention(start, start + len(w), si, "noun", (), PERSON_NOUNS.get(low, MR_MRS.get(w)), quoted, w)
                    )
                elif w[:1].isupper() and self._is_stray(
                    w, words, i, self._starts(s.text, toks, i, words), possessive=t.group() != w
                ):
                    out.append(Mention(start, start + len(w), si, "stray", (), None, quoted, w))
                i += 1
        return out

    def _starts(self, text: str, toks: list, i: int, words: list[str]) -> bool:
        """Token i starts a sentence, a line, a quotation or a heading ("Mr Hans" counts as a start too)."""
        if i == 0 or i == 1 and words[0] in self.prefixes:
            return True
        gap = text[toks[i - 1].end() : toks[i].start()]
        return any(ch in gap for ch in '\n:"“‘—(.…')  # "skybound....My mind" was never split

    # -- pronouns ------------------------------------------------------------------------------------
    def resolve(self, sentences: list[_Sentence], mentions: list[Mention]) -> list[Finding]:
        findings = []
        for k, p in enumerate(mentions):
            if p.kind != "pronoun" or p.quoted:
                continue
            window = self._window(sentences, mentions, k)
            compatible = [c for c in window if c.gender in (None, p.gender)]
            if compatible and compatible[0].bad:  # "He picked up his bag": both follow the wrong one
                window, compatible = [compatible[0]], []
            if not compatible:  # before calling it wrong, look two sentences further back for someone it fits
                compatible = [
                    c for c in self._window(sentences, mentions, k, further=True) if c.gender in (None, p.gender)
                ]
            if compatible:
                c = compatible[0]
                p.referent = True
                if c.kind == "name" and len(c.members) == 1:
                    p.resolved = c.members[0]
                elif c.kind == "pronoun":
                    p.resolved, p.stray_ref = c.resolved, c.stray_ref
                elif c.kind == "stray":
                    p.stray_ref = c.word
                continue
            cast_cands = [
                c for c in window if (c.kind == "name" and len(c.members) == 1) or (c.kind == "pronoun" and c.resolved)
            ]
            if not cast_cands:
                continue
            c = cast_cands[0]
            who = c.members[0] if c.kind == "name" else c.resolved
            p.resolved, p.bad, p.referent = who, True, True
            s = sentences[p.sentence]
            findings.append(
                Finding(
                    kind="wrong_pronoun",
                    character=who,
                    span=p.word,
                    start=p.start,
                    sentence=s.text,
                    sentence_index=p.sentence,
                    fix=_swap(p.word, s.text, p.start - s.start),
                    reason=f"'{p.word}' refers to {who}, whose pronouns are {self.by_name[who].pronouns}",
                )
            )
        return findings

    def _window(self, sentences, mentions: list[Mention], k: int, further: bool = False) -> list[Mention]:
        """Candidates for pronoun k in order of preference: its sentence (most recent first), then the previous
        one from its start (further back while empty); later in the sentence when it opens with a
        subordinator ('When she came, Amara ...').
        `further`: the two sentences before that window instead."""
        p = mentions[k]
        before = [m for m in mentions[:k] if not m.quoted and (m.kind != "pronoun" or m.referent)]
        if further:
            return [m for m in before if p.sentence - 3 <= m.sentence <= p.sentence - 2][::-1]
        same = [m for m in reversed(before) if m.sentence == p.sentence]
        first_word = sentences[p.sentence].text.split(maxsplit=1)[0].lower().strip("\"“'")
        if first_word in SUBORDINATORS:
            same += [m for m in mentions[k + 1 :] if m.sentence == p.sentence and m.kind != "pronoun" and not m.quoted]
        # earlier sentences are read from their start, so their subject comes first (Hobbs' order)
        window = same + [m for m in before if m.sentence == p.sentence - 1]
        back = 2
        while not window and back <= 3 and p.sentence - back >= 0:
            window = [m for m in before if m.sentence == p.sentence - back]
            back += 1
        return window

    # -- the dead ------------------------------------------------------------------------------------
    def _deaths(self, sentences, mentions: list[Mention]) -> dict[str, int]:
        """cast member -> index of the sentence that kills them (-1 for deaths known before this text)."""
        dead = {name: -1 for name in self.facts.dead if name in self.by_name}
        for m in mentions:
            who = (
                m.members[0]
                if m.kind == "name" and len(m.members) == 1
                else m.resolved
                if m.kind == "pronoun"
                else None
            )
            if who is None or who in dead or m.quoted:
                continue
            s = sentences[m.sentence]
            after, before = s.text[m.end - s.start :], s.text[: m.start - s.start]
            possessive = m.word.lower() in ("her", "his") or after.startswith(("'s", "’s"))  # her father died
            died = (
                not possessive and _DEATH_AFTER.match(after) and not _negated(after[: _DEATH_AFTER.match(after).end()])
            )
            if died or _DEATH_POSSESSIVE.match(after) or _DEATH_BEFORE.search(before):
                dead[who] = m.sentence
        return dead

    def dead_acting(self, sentences, mentions: list[Mention], dead: dict[str, int]) -> list[Finding]:
        findings, seen = [], set()
        for m in mentions:
            who = (
                m.members[0]
                if m.kind == "name" and len(m.members) == 1
                else m.resolved
                if m.kind == "pronoun"
                else None
            )
            if who not in dead or m.sentence <= dead[who] or m.quoted or m.sentence in seen:
                continue
            if m.kind == "pronoun" and m.word.lower() not in SUBJECT_PRONOUNS:
                continue
            s = sentences[m.sentence]
            if MEMORY_CUES.search(s.text):
                continue
            verb = _action_after(s.text[m.end - s.start :])
            if verb:
                seen.add(m.sentence)
                m.bad = True
                findings.append(
                    Finding(
                        kind="dead_acting",
                        character=who,
                        span=f"{m.word} {verb}",
                        start=m.start,
                        sentence=s.text,
                        sentence_index=m.sentence,
                        reason=f"{who} died earlier but '{verb}' here",
                    )
                )
        return findings

    # -- traits and facts --------------------------------------------------------------------------------
    def contradictions(self, sentences, mentions: list[Mention], learned: StoryFacts) -> list[Finding]:
        findings = []
        for si, s in enumerate(sentences):
            here = [m for m in mentions if m.sentence == si and not (m.kind == "pronoun" and m.quoted)]
            for c in self.cast:
                for trait in c.traits:
                    rx = _ANTONYM_RE.get(trait.lower())
                    for hit in rx.finditer(s.text) if rx else ():
                        pos = s.start + hit.start()
                        if _negated(s.text[max(0, hit.start() - 25) : hit.start()]) or any(
                            a < pos < b for a, b in s.quoted
                        ):
                            continue
                        excuse = NOT_CONTRADICTED.get(trait.lower())
                        if excuse and excuse.search(s.text):
                            continue
                        m = _nearest(here, pos)
                        if m is not None and _who(m) == c.name:
                            m.bad = True
                            findings.append(
                                Finding(
                                    kind="contradiction",
                                    character=c.name,
                                    span=hit.group(),
                                    start=pos,
                                    sentence=s.text,
                                    sentence_index=si,
                                    reason=f"{c.name} is {trait} on the sheet, but '{hit.group()}' here",
                                )
                            )
            findings += self._kinship(s, si, here, learned)
        return findings

    def _kinship(self, s: _Sentence, si: int, here: list[Mention], learned: StoryFacts) -> list[Finding]:
        out = []
        for rx in (_KIN_A, _KIN_B):
            for hit in rx.finditer(s.text):
                b = self._one(hit.group("name"))
                owner_word = re.sub(r"(?:'s|’s)$", "", hit.group("owner"))
                if owner_word.lower() in ("her", "his"):
                    pos = s.start + hit.start("owner")
                    a = next((_who(m) for m in here if m.start == pos), None)
                else:
                    a = self._one(owner_word)
                rel = hit.group("rel").lower()
                if not b:
                    continue
                cat, g = KIN[rel]
                problem = None
                if g and self.gender[b] and g != self.gender[b]:
                    problem = f"{b} ({self.by_name[b].pronouns}) is called a {rel}"
                elif a and a != b:
                    known = self._kin(a, b, learned)
                    back = self._kin(b, a, learned)
                    if known and KIN.get(known, (known, None))[0] != cat:
                        problem = f"{b} is {a}'s {known}, not {rel}"
                    elif back and KIN.get(back, (back, None))[0] != INVERSE[cat]:
                        problem = f"{a} is {b}'s {back}, so {b} cannot be {a}'s {rel}"
                    elif not known:
                        learned.kin.setdefault(a, {})[b] = rel
                if problem:
                    for m in here:
                        if m.kind == "name" and m.members == (b,):
                            m.bad = True
                    out.append(
                        Finding(
                            kind="contradiction",
                            character=b,
                            span=hit.group(),
                            start=s.start + hit.start(),
                            sentence=s.text,
                            sentence_index=si,
                            reason=problem,
                        )
                    )
        return out

    def _kin(self, a: str, b: str, learned: StoryFacts) -> str | None:
        """What b is to a, from the sheet, earlier scenes, or this text so far; only kinship words count."""
        for source in (self.by_name[a].relationships, self.facts.kin.get(a, {}), learned.kin.get(a, {})):
            rel = source.get(b) or next((v for k, v in source.items() if b in k.split() or k in b.split()), None)
            if rel and rel.lower() in KIN:
                return rel.lower()
        return None

    def _one(self, word: str) -> str | None:
        m = self._member_of(word)
        return m[0] if len(m) == 1 else None

    # -- stray names ---------------------------------------------------------------------------------
    def strays(self, sentences, mentions: list[Mention]) -> list[Finding]:
        findings, done = [], set()
        for m in mentions:
            if m.kind != "stray":
                continue
            m.bad = True
            if m.word in done:
                continue
            done.add(m.word)
            s = sentences[m.sentence]
            fix = self._stand_in(m.word, mentions)
            findings.append(
                Finding(
                    kind="foreign_name",
                    character=fix,
                    span=m.word,
                    start=m.start,
                    sentence=s.text,
                    sentence_index=m.sentence,
                    fix=fix and self._short(fix, mentions),
                    reason=f"{m.word} is not in the cast",
                )
            )
        return findings

    def _stand_in(self, stray: str, mentions: list[Mention]) -> str | None:
        """The cast member a stray name most likely stands for: pronouns that point to it match their gender,
        they are not named elsewhere in the text, they are alive; ties go to the earlier in the cast."""
        genders = [p.gender for p in mentions if p.kind == "pronoun" and p.stray_ref == stray]
        named = {m.members[0] for m in mentions if m.kind == "name" and len(m.members) == 1}
        g = max(set(genders), key=genders.count) if genders else None

        def score(c: Character) -> int:
            return (
                2 * (g is not None and self.gender[c.name] == g)
                + (c.name not in named)
                + (c.name not in self.facts.dead)
            )

        return max(self.cast, key=score).name if self.cast else None

    def _short(self, name: str, mentions: list[Mention]) -> str:
        """The form of the name the text already uses most, else its first word."""
        used = [m.word for m in mentions if m.kind == "name" and m.members == (name,)]
        return max(set(used), key=used.count) if used else name.split()[0]

    # -- all together --------------------------------------------------------------------------------
    def check(self, text: str) -> CheckResult:
        sentences = _sentences(text)
        mentions = self.mentions(sentences)
        findings = self.resolve(sentences, mentions)
        findings += self.strays(sentences, mentions)
        dead = self._deaths(sentences, mentions)
        findings += self.dead_acting(sentences, mentions, dead)
        learned = StoryFacts(dead=sorted(dead))
        findings += self.contradictions(sentences, mentions, learned)
        counted = [m for m in mentions if m.kind == "stray" or m.kind == "name" or m.kind == "pronoun" and m.resolved]
        agreeing = sum(not m.bad for m in counted)
        per: dict[str, int] = {c.name: 0 for c in self.cast}
        where: dict[str, list[int]] = {c.name: [] for c in self.cast}
        for m in counted:
            who = _who(m)
            if who:
                per[who] += 1
                if m.sentence not in where[who]:
                    where[who].append(m.sentence)
        return CheckResult(
            findings=sorted(findings, key=lambda f: f.start),
            mentions=per,
            total_mentions=len(counted),
            agreeing_mentions=agreeing,
            character_consistency=round(agreeing / len(counted), 4) if counted else 1.0,
            sentences_of=where,
            sentences=[s.text for s in sentences],
            learned=learned,
        )

    def learn(self, result: CheckResult) -> None:
        """Keep a checked text's deaths and kinship for the next scenes."""
        self.facts.dead = sorted(set(self.facts.dead) | set(result.learned.dead))
        for a, rels in result.learned.kin.items():
            for b, rel in rels.items():
                self.facts.kin.setdefault(a, {}).setdefault(b, rel)


def _who(m: Mention) -> str | None:
    if m.kind == "name" and len(m.members) == 1:
        return m.members[0]
    return m.resolved if m.kind == "pronoun" else None


def _nearest(mentions: list[Mention], pos: int) -> Mention | None:
    """The mention closest before `pos`, else the first after it."""
    before = [m for m in mentions if m.end <= pos]
    if before:
        return before[-1]
    return next((m for m in mentions if m.start > pos), None)


def _negated(text: str) -> bool:
    words = re.findall(r"[\w']+", text.lower())[-3:]
    return any(w in NEGATIONS or w.endswith("n't") or w in ("almost", "nearly") for w in words)


def _action_after(rest: str) -> str | None:
    """The action verb right after a subject mention ('Kofi slowly walked' -> 'walked'), if any."""
    words = re.findall(r"[A-Za-z'’]+", rest)[:5]
    if words and words[0].lower() in ("'s", "’s", "s"):
        return None
    i = 0
    while i < len(words) and (words[i].lower() in SKIP_BEFORE_VERB or words[i].lower().endswith("ly")):
        i += 1
    if i >= len(words):
        return None
    w = words[i].lower()
    if w in ("was", "were") and i + 1 < len(words):
        nxt = words[i + 1].lower()
        return f"{w} {nxt}" if nxt.endswith("ing") else None
    if w in IRREGULAR_PAST and w not in NOT_ACTION_ED:
        return w
    if w.endswith("ed") and len(w) > 3 and w not in NOT_ACTION_ED:
        return w
    return None


def _swap(word: str, sentence: str, offset: int) -> str:
    """The pronoun of the other gender, in the same case; 'her' is 'his' before a noun, 'him' otherwise."""
    low = word.lower()
    if low == "her":
        nxt = re.match(r"\s+([A-Za-z'’-]+)", sentence[offset + len(word) :])
        object_form = nxt is None or nxt.group(1).lower() in _AFTER_OBJECT
        new = "him" if object_form else "his"
    elif low == "his":
        nxt = re.match(r"\s+([A-Za-z'’-]+)", sentence[offset + len(word) :])
        new = "her" if nxt and nxt.group(1).lower() not in _AFTER_OBJECT else "hers"
    else:
        new = SWAP[low]
    return new.capitalize() if word[0].isupper() else new


_AFTER_OBJECT = set(
    "to and or but as at in on up down out off from with into for by back away again that than "
    "the a an this these those".split()
)
