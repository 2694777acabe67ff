"""English detection without a model: letter script plus function-word evidence.

Why a heuristic: the pipeline keeps English conversations (as the WildFeedback paper did), sources
such as ShareGPT carry no language field, and a network or model download is not acceptable in a
data-loading step. Two signals are cheap and robust on chat text:

1. *Script*: the share of letters that are ASCII ``A-Z``/``a-z`` among all letters. Chinese, Russian,
   Arabic, ... score near 0.
2. *Function words*: English text is full of short words (``the``, ``is``, ``to``, ``you``) that
   Spanish, French, German, Portuguese, Italian, Dutch, Indonesian, Turkish or Polish text lacks, and
   vice versa. Words shared with English (``a``, ``in``, ``no``, ``me``, ``was``) carry no evidence
   and are in neither list.

Code blocks, inline code and URLs are removed first, so a question with a long code paste is judged
by its prose. ``score = ascii_share * (en + 0.5) / (en + other + 1) * coverage`` where
``coverage = min(1, (en + 2) / (0.15 * words))``: English prose is at least 15 % function words, so a
longer text with (almost) none is penalised even when its language is in no list. With no evidence
either way a short message scores half its script share, so "Quantum computing?" counts as English
at the default threshold 0.5. Text without letters scores 0.

The same computation is available as a DuckDB SQL expression (:func:`english_score_sql`).
"""

from __future__ import annotations

import re

_ENGLISH_WORDS = """
the of and to is are was were be been being it its this that these those there their they them you
your yours we our us he him his she her hers i my mine with for from by at as or but not if then than
so what which who whom whose when where why how can could would should will shall may might must do
does did done have has had having about into over under after before between through during without
again also just only very more most other some any each few such own same too can't don't doesn't
didn't isn't aren't wasn't weren't won't wouldn't couldn't shouldn't i'm you're it's that's there's
what's let's here all both because while until against up down out off once like get got make made
thank thanks please hello hi hey yes yeah okay ok sure write explain tell give show help create
generate summarize rewrite describe list translate continue fix answer question using use want need
know think
"""

_OTHER_WORDS = """
el los las un una unos unas del al que de y en es son está están estoy fue ser por para con sin sobre
pero como más muy también porque cuando donde quien cual esto esta este eso esa ese lo le les se su
sus mi mis tu tus nuestro usted ustedes yo nosotros hola gracias por favor puedes quiero hacer tiene
le la les des du et est sont une dans pour avec sur pas plus mais comme très aussi parce quand où qui
quoi cette ces je tu il elle nous vous ils elles mon ma mes ton ta tes notre votre leur bonjour merci
peux veux faire être avoir c'est n'est qu'il
der die das und ist sind was war waren so also ein eine einen einem einer nicht mit für auf dem den des im zu zum zur
von bei aus nach wie oder aber auch noch nur schon sehr wenn dann dass ich du er sie wir ihr mein dein
sein unser euer hallo danke bitte kannst können möchte machen haben
il lo gli le una uno di che è sono con per non più come anche perché quando dove chi questo questa
quello quella io tu lui lei noi voi loro ciao grazie puoi voglio fare avere
o os as um uma uns umas do da dos das ao aos em no na nos nas é são com por para não mais como também
porque quando onde quem isso isto esse essa eu você nós eles elas olá obrigado obrigada pode quero
fazer ter
het een van en zijn niet met voor op aan ook maar als dan dat die deze dit ik jij je wij jullie hij
zij mijn jouw onze bedankt alsjeblieft kun wil maken hebben
yang dan di ini itu untuk dengan tidak saya anda ada akan bisa dari ke apa bagaimana tolong adalah juga
atau kami kita mereka sudah belum
bir ve bu ile ne mi ben sen biz siz gibi daha ama nasil neden yapmak istiyorum misin
w z na nie jest jak czy ale sie jestem mam prosze dziekuje tak
"""


def _words(block: str) -> frozenset[str]:
    return frozenset(block.split())


_EN = _words(_ENGLISH_WORDS)
_OTHER_ALL = _words(_OTHER_WORDS)
#: Words that are evidence for English, and for one of the other languages; never both.
ENGLISH_WORDS: frozenset[str] = frozenset(w for w in _EN - _OTHER_ALL if w.isascii())
OTHER_WORDS: frozenset[str] = frozenset(w for w in _OTHER_ALL - _EN if w.isascii())

# Code and URLs say nothing about the conversation's language. ASCII classes so RE2 reads it alike.
_CODE_PATTERN = r"```[\s\S]*?(?:```|\Z)|`[^`\n]*`|https?://[^ \t\r\n]+"
_CODE = re.compile(_CODE_PATTERN)
_NON_LETTER = re.compile(r"[\W\d_]")
_NON_ASCII_LETTER = re.compile(r"[^A-Za-z]")
# Whole words in any script: splitting "için" at the "ç" would invent the English word "i".
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_WORD_PATTERN_RE2 = r"\p{L}+(?:'\p{L}+)?"
#: Fewer English function words than this share of all words lowers the score (see module doc).
MIN_FUNCTION_WORD_RATE = 0.15
_FUNCTION_WORD_SLACK = 2

DEFAULT_THRESHOLD = 0.5


def english_score(text: str) -> float:
    """How English ``text`` looks, from 0 (not at all) to about 1."""
    prose = _CODE.sub(" ", text)
    letters = len(_NON_LETTER.sub("", prose))
    if letters == 0:
        return 0.0
    ascii_share = len(_NON_ASCII_LETTER.sub("", prose)) / letters
    words = _WORD.findall(prose)
    en = other = 0
    for word in words:
        word = word.lower()
        if word in ENGLISH_WORDS:
            en += 1
        elif word in OTHER_WORDS:
            other += 1
    coverage = min(1.0, (en + _FUNCTION_WORD_SLACK) / (MIN_FUNCTION_WORD_RATE * len(words))) if words else 1.0
    return ascii_share * (en + 0.5) / (en + other + 1.0) * coverage


def is_english(text: str, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when :func:`english_score` reaches ``threshold``."""
    return english_score(text) >= threshold


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_word_list(words: frozenset[str]) -> str:
    return "[" + ", ".join(_sql_literal(w) for w in sorted(words)) + "]"


def english_score_sql(column: str = "content") -> str:
    """DuckDB SQL expression computing :func:`english_score` for ``column`` (needs DuckDB >= 1.3).

    Letters are counted with RE2's ``\\p{L}``, Python counts ``str`` letters; the two agree on ordinary
    text (they can differ on rare symbols such as superscript digits).
    """
    code = _sql_literal(_CODE_PATTERN.replace("\\Z", "\\z"))  # RE2 spells end-of-text \z
    prose = f"regexp_replace({column}, {code}, ' ', 'g')"
    letters = f"length(regexp_replace({prose}, '[^\\p{{L}}]', '', 'g'))"
    ascii_letters = f"length(regexp_replace({prose}, '[^A-Za-z]', '', 'g'))"
    words = f"regexp_extract_all({prose}, {_sql_literal(_WORD_PATTERN_RE2)})"
    en = f"len(list_filter({words}, lambda w: list_contains({_sql_word_list(ENGLISH_WORDS)}, lower(w))))"
    other = f"len(list_filter({words}, lambda w: list_contains({_sql_word_list(OTHER_WORDS)}, lower(w))))"
    n_words = f"len({words})"
    coverage = (
        f"(CASE WHEN {n_words} = 0 THEN 1.0 ELSE "
        f"least(1.0, (({en}) + {_FUNCTION_WORD_SLACK}) / ({MIN_FUNCTION_WORD_RATE!r} * {n_words})) END)"
    )
    return (
        f"(CASE WHEN {letters} = 0 THEN 0.0 ELSE "
        f"({ascii_letters} / {letters}) * (({en}) + 0.5) / (({en}) + ({other}) + 1.0) * {coverage} END)"
    )


def is_english_sql(column: str = "content", threshold: float = DEFAULT_THRESHOLD) -> str:
    """DuckDB SQL boolean expression equivalent to :func:`is_english`."""
    return f"({english_score_sql(column)} >= {float(threshold)!r})"
