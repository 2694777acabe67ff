"""Text and structure filters: PII scrubbing, English detection, role/length checks (Python and SQL)."""

from __future__ import annotations

import duckdb
import pytest

from wfsql.conversations import (
    conversation_chars_sql,
    english_score,
    english_score_sql,
    has_min_user_turns,
    is_english,
    is_english_sql,
    max_chars_sql,
    min_user_turns_sql,
    roles_alternate,
    roles_alternate_sql,
    scrub_pii,
    scrub_pii_sql,
    within_max_chars,
)
from wfsql.conversations.pii import find_pii


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def sql_map(con: duckdb.DuckDBPyConnection, expression: str, texts: list[str]) -> list[object]:
    """Evaluate ``expression`` (over a column named content) for every text, in order."""
    rows = con.execute(
        f"SELECT {expression} FROM (SELECT unnest(?) AS content, generate_subscripts(?, 1) AS i) ORDER BY i",
        [texts, texts],
    ).fetchall()
    return [r[0] for r in rows]


# --------------------------------------------------------------------------- PII

PII_CASES: list[tuple[str, str]] = [
    ("Mail me at jane.doe+work@mail.example.co.uk tomorrow.", "Mail me at [EMAIL] tomorrow."),
    ("UK office +44 20 7946 0958, US desk (415) 555-0132.", "UK office [PHONE], US desk [PHONE]."),
    ("Call 212-555-0187 or 212.555.0199 after 5pm.", "Call [PHONE] or [PHONE] after 5pm."),
    ("WhatsApp: +86 138 1234 5678", "WhatsApp: [PHONE]"),
    ("openai.api_key = 'sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv'", "openai.api_key = '[SECRET]'"),
    (
        "git clone https://ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8@github.com/me/repo",
        "git clone https://[SECRET]@github.com/me/repo",
    ),
    ("aws_access_key_id=AKIAIOSFODNN7EXAMPLE", "aws_access_key_id=[SECRET]"),
    (
        "curl -H 'Authorization: Bearer abcDEF123456ghiJKL789' https://api.x.io",
        "curl -H 'Authorization: Bearer [SECRET]' https://api.x.io",
    ),
    ('config = {"api_key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}', 'config = {"api_key": "[SECRET]"}'),
    ("SECRET_KEY=django-insecure-4kz8q2m7x1", "SECRET_KEY=[SECRET]"),
    ("my password: Hunter2024! please keep it", "my password: [SECRET] please keep it"),
    ("ssh root@203.0.113.42 then ping 10.0.0.1", "ssh root@[IP] then ping [IP]"),
    ("hosts 192.168.1.10 192.168.1.11", "hosts [IP] [IP]"),
    ("Server at 8.8.8.8.", "Server at [IP]."),
    ("Card 4111 1111 1111 1111 exp 09/27", "Card [CARD] exp 09/27"),
    (
        "id_token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "id_token: [SECRET]",
    ),
]

NOT_PII: list[str] = [
    "The meeting is on 2024-03-15 at 10:30, room 4B.",
    "Upgrade from Python 3.11.4 to 3.12.1 and numpy 1.26.0.",
    "It costs $12.50, or 1,299.99 EUR for the bundle.",
    "for i in range(10):\n    total += i * 2  # sum of evens",
    "token = tokenizer.encode(text)\nsecret_key = os.environ['SECRET_KEY']",
    "The ISBN is 978-3-16-148410-0 and the order number 12345.",
    "Use the @property decorator and the email field in the form.",
    "Population grew from 7,800,000,000 to 8 billion; 3 + 4 = 7.",
    "Version v1.2.3.4 of the firmware shipped in 2023.",
    "See https://example.com/docs?page=2#section-3 for details.",
]


@pytest.mark.parametrize(("text", "expected"), PII_CASES)
def test_scrub_pii_python(text: str, expected: str) -> None:
    assert scrub_pii(text) == expected


@pytest.mark.parametrize("text", NOT_PII)
def test_ordinary_text_is_not_scrubbed(text: str) -> None:
    assert scrub_pii(text) == text
    assert find_pii(text) == []


def test_scrub_pii_sql_matches_python(con: duckdb.DuckDBPyConnection) -> None:
    texts = [t for t, _ in PII_CASES] + NOT_PII + ["", "multi\nline\n+44 20 7946 0958\nend", "1.2.3.4"]
    assert sql_map(con, scrub_pii_sql("content"), texts) == [scrub_pii(t) for t in texts]


def test_find_pii_names_the_rules() -> None:
    hits = find_pii("write to a@b.io or call +1 415 555 0132")
    assert [name for name, _ in hits] == ["email", "phone_international"]


def test_scrub_pii_is_linear_on_long_tokens() -> None:
    blob = "A" * 200_000 + "@" + "b" * 50_000
    assert scrub_pii(blob) == blob  # no TLD -> not an e-mail; must return quickly


# --------------------------------------------------------------------------- language

ENGLISH = [
    "Can you explain how the attention mechanism works in transformers? I want to understand why it is better.",
    "Thanks, that fixed it! Now how do I write the results to a CSV file?",
    "Why does this fail?\n```python\ndef load(path):\n    with open(path) as f:\n        return json.load(f)\n```\n"
    "It raises JSONDecodeError on the second file. What is wrong with my code?",
    "Write a poem about the sea",
    "Quantum computing?",
    "Summarize: Transformer architectures dominate modern NLP benchmarks, outperforming recurrent networks "
    "across translation, summarization, question answering tasks.",
    "```js\nconst xs = [1, 2, 3].map((x) => x * 2);\nconsole.log(xs);\n```\nthis prints the wrong thing, please help",
]
NOT_ENGLISH = [
    "¿Puedes explicarme cómo funciona el mecanismo de atención? Quiero entender por qué es mejor que las redes.",
    "请解释一下变压器中的注意力机制是如何工作的？我想了解为什么它比循环神经网络更好。",  # noqa: RUF001 - real Chinese
    "Ich habe eine Frage zu meinem Code, kannst du mir bitte helfen?",
    "Bonjour, je voudrais savoir comment faire une tarte aux pommes pour ce soir.",
    "Напиши стихотворение о море",  # noqa: RUF001 - real Russian
    "Olá, você pode me ajudar com o meu código? Não funciona.",
    "12345 + 678 = ?",
    "Saya ingin belajar bahasa pemrograman Python untuk analisis data, tolong berikan saya panduan",
    "Bir web sitesi için basit bir giriş sayfası yapmak istiyorum, bana yardım edebilir misin lütfen",  # noqa: RUF001
    "Chcę napisać prosty program w Pythonie, który liczy słowa w pliku tekstowym",
]


@pytest.mark.parametrize("text", ENGLISH)
def test_english_is_detected(text: str) -> None:
    assert is_english(text), english_score(text)


@pytest.mark.parametrize("text", NOT_ENGLISH)
def test_other_languages_are_not_english(text: str) -> None:
    assert not is_english(text), english_score(text)


def test_english_score_orders_mixed_text() -> None:
    pure = english_score("Please summarize the following article in three sentences for me.")
    mixed = english_score("Please summarize 这篇文章 in three sentences, 谢谢你的帮助和支持")
    chinese = english_score("请用三句话总结这篇文章")
    assert pure > mixed > chinese
    assert english_score("") == 0.0


def test_english_sql_matches_python(con: duckdb.DuckDBPyConnection) -> None:
    texts = ENGLISH + NOT_ENGLISH + ["", "ok", "gracias"]
    scores = sql_map(con, english_score_sql("content"), texts)
    assert scores == pytest.approx([english_score(t) for t in texts], abs=1e-12)
    assert sql_map(con, is_english_sql("content"), texts) == [is_english(t) for t in texts]


# --------------------------------------------------------------------------- structure

ROLE_CASES: list[tuple[list[str], bool]] = [
    (["user", "assistant", "user", "assistant"], True),
    (["system", "user", "assistant", "user"], True),
    (["user"], True),
    (["assistant", "user"], False),
    (["user", "user", "assistant"], False),
    (["user", "assistant", "system", "user"], False),
    (["system"], False),
    (["system", "system", "user"], False),
]


@pytest.mark.parametrize(("roles", "expected"), ROLE_CASES)
def test_roles_alternate_python(roles: list[str], expected: bool) -> None:
    assert roles_alternate(roles) is expected


def test_roles_alternate_sql_matches_python(con: duckdb.DuckDBPyConnection) -> None:
    rows = [(f"c{n}", i, role) for n, (roles, _) in enumerate(ROLE_CASES) for i, role in enumerate(roles)]
    con.execute("CREATE OR REPLACE TEMP TABLE t_turns (conversation_id VARCHAR, turn_index INT, role VARCHAR)")
    con.executemany("INSERT INTO t_turns VALUES (?, ?, ?)", rows)
    got = dict(con.execute(roles_alternate_sql("t_turns")).fetchall())
    assert got == {f"c{n}": expected for n, (_, expected) in enumerate(ROLE_CASES)}


def test_min_user_turns_and_max_chars(con: duckdb.DuckDBPyConnection) -> None:
    roles = ["user", "assistant", "user"]
    assert has_min_user_turns(roles, 2) and not has_min_user_turns(roles, 3)
    assert within_max_chars(["abc", "de"], 5) and not within_max_chars(["abc", "de"], 4)
    con.execute("CREATE OR REPLACE TEMP TABLE t_conv AS SELECT 'a' AS conversation_id, 2 AS n_user_turns")
    assert con.execute(f"SELECT {min_user_turns_sql(2)} FROM t_conv").fetchone()[0] is True
    assert con.execute(f"SELECT {min_user_turns_sql(3)} FROM t_conv").fetchone()[0] is False
    con.execute(
        "CREATE OR REPLACE TEMP TABLE t_len AS SELECT * FROM (VALUES ('a', 0, 3), ('a', 1, 2), ('b', 0, 9)) "
        "AS v(conversation_id, turn_index, char_length)"
    )
    rows = con.execute(
        f"SELECT conversation_id, total_chars, max_turn_chars, {max_chars_sql(5)} "
        f"FROM ({conversation_chars_sql('t_len')}) ORDER BY 1"
    ).fetchall()
    assert rows == [("a", 5, 3, True), ("b", 9, 9, False)]
