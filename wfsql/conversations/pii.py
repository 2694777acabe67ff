"""Regex-based scrubbing of personal data and secrets, in Python and as a DuckDB SQL expression.

One ordered rule list drives both implementations, so a Python preview and a SQL model give the same
text. The patterns keep to the subset that Python's ``re`` (with ``re.ASCII``) and DuckDB's RE2 read
the same way: no look-around, no back-references, ASCII classes, ``^`` only as "start of text".
The one spelling difference, end of text (``\\Z`` in Python, ``\\z`` in RE2), is translated.

Regexes catch well-formed identifiers, not everything personal: names, street addresses and
free-form secrets pass through. Rules are ordered so specific ones run first (a key inside an e-mail
signature is still a key, a card number is not read as a phone number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PiiRule:
    """One substitution: ``pattern`` is shared by Python and RE2; ``replacement`` may use ``\\1``.

    ``passes > 1`` re-applies the rule, for patterns that must consume a neighbouring character
    (RE2 has no look-around) and could therefore miss a second match right next to the first.
    """

    name: str
    pattern: str
    replacement: str
    passes: int = 1


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_TOKEN_CHARS = r"A-Za-z0-9+/_\-"
# Bounded repeats keep Python's backtracking engine linear on long unbroken tokens (base64 blobs).
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"

PII_RULES: tuple[PiiRule, ...] = (
    PiiRule(
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        "[SECRET]",
    ),
    PiiRule("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", "[SECRET]"),
    PiiRule("bearer", r"(?i)\b(bearer[ \t]+)[A-Za-z0-9\-._~+/]{16,}=*", r"\1[SECRET]"),
    PiiRule("openai_key", r"\bsk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_\-]{20,}", "[SECRET]"),
    PiiRule("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}", "[SECRET]"),
    PiiRule("aws_access_key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", "[SECRET]"),
    PiiRule("slack_token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", "[SECRET]"),
    PiiRule("google_api_key", r"\bAIza[A-Za-z0-9_\-]{35}", "[SECRET]"),
    PiiRule(
        "password_assignment",
        r"(?i)\b((?:password|passwd|passphrase|pwd)[\"']?[ \t]*[:=][ \t]*[\"']?)[^\s\"']{4,}",
        r"\1[SECRET]",
    ),
    PiiRule(
        # key/token/secret = value: a quoted value of 8+ token characters (the quotes are kept), or an
        # unquoted one containing a digit with 4+ characters before it and 3+ after. Code such as
        # ``token = tokenizer.encode(x)`` has no such value and is left alone.
        "secret_assignment",
        r"(?i)\b((?:api[_\-]?key|apikey|access[_\-]?key(?:[_\-]?id)?|secret(?:[_\-]?key)?|client[_\-]?secret"
        r"|auth[_\-]?token|access[_\-]?token|token)[\"']?[ \t]*[:=][ \t]*[\"']?)"
        rf"(?:[{_TOKEN_CHARS}.=]{{8,}}([\"'])|[{_TOKEN_CHARS}]{{4,}}[0-9][{_TOKEN_CHARS}=]{{3,}})",
        r"\1[SECRET]\2",
    ),
    PiiRule(
        "email",
        rf"[A-Za-z0-9._%+\-]{{1,64}}@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*\.[A-Za-z]{{2,}}\b",
        "[EMAIL]",
    ),
    PiiRule("credit_card", r"\b[3-6][0-9]{3}(?:[ \-]?[0-9]{4}){3}\b", "[CARD]"),
    PiiRule(
        "ipv4",
        rf"(^|[^A-Za-z0-9.])(?:{_OCTET}\.){{3}}{_OCTET}([^A-Za-z0-9.]|\.[^0-9]|\.?\Z)",
        r"\1[IP]\2",
        passes=2,
    ),
    PiiRule(
        "phone_international",
        r"\+[1-9][0-9]{0,2}[ .\-]?\(?[0-9]{1,4}\)?(?:[ .\-]?[0-9]{2,4}){2,4}\b",
        "[PHONE]",
    ),
    PiiRule(
        "phone_us",
        r"(^|[^0-9A-Za-z+\-])(?:\([2-9][0-9]{2}\)[ .\-]?|[2-9][0-9]{2}[ .\-])[0-9]{3}[ .\-][0-9]{4}\b",
        r"\1[PHONE]",
    ),
)

_COMPILED: tuple[tuple[re.Pattern[str], str, int], ...] = tuple(
    (re.compile(rule.pattern, re.ASCII), rule.replacement, rule.passes) for rule in PII_RULES
)

PLACEHOLDERS: tuple[str, ...] = ("[EMAIL]", "[PHONE]", "[SECRET]", "[IP]", "[CARD]")


def scrub_pii(text: str) -> str:
    """Replace e-mails, phone numbers, secrets, IPv4 addresses and card numbers with placeholders."""
    for pattern, replacement, passes in _COMPILED:
        for _ in range(passes):
            text = pattern.sub(replacement, text)
    return text


def find_pii(text: str) -> list[tuple[str, str]]:
    """``(rule name, matched text)`` for every rule hit, applying rules in order like :func:`scrub_pii`."""
    hits: list[tuple[str, str]] = []
    for rule, (pattern, replacement, passes) in zip(PII_RULES, _COMPILED, strict=True):
        for _ in range(passes):
            hits.extend((rule.name, m.group(0)) for m in pattern.finditer(text))
            text = pattern.sub(replacement, text)
    return hits


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def to_re2(pattern: str) -> str:
    """Python spelling -> RE2 spelling (only end-of-text differs in the subset used here)."""
    return pattern.replace(r"\Z", r"\z")


def scrub_pii_sql(column: str = "content") -> str:
    """DuckDB SQL expression that scrubs ``column`` exactly like :func:`scrub_pii`.

    ``column`` is inserted verbatim (it may be any SQL expression, e.g. ``t.content``).
    """
    expr = column
    for rule in PII_RULES:
        for _ in range(rule.passes):
            pattern, replacement = _sql_literal(to_re2(rule.pattern)), _sql_literal(rule.replacement)
            expr = f"regexp_replace({expr}, {pattern}, {replacement}, 'g')"
    return expr
