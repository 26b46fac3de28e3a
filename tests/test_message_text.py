"""Issue 15: links and formatting in message text, and mentions.

The parser (assets/message_format.js) runs in Node as the page runs it; the component
(assets/message_text.js) is rendered with react-dom/server's renderToStaticMarkup, with the
React of the shared built frontend (the `backend_process` fixture builds it once per session).
The property test renders random text full of markup and markers and checks that only the
renderer's own elements and attributes come out, every link is a safe new-tab link, and the
text shown is the text written, less the format's markers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.backend import ROOT, Backend
from tests.browser import _fail_under_ci_else_skip

MEMBERS = ["alice", "bob", "Zoë"]
ME = "bob"
ROOT_PROPS = {"dir": "auto", "data-testid": "message-text", "className": "bubble-text"}


class Driver:
    """One Node process (tests/node/render_message_text.mjs) for the whole module."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            _fail_under_ci_else_skip("Node is not installed")
        self._process = subprocess.Popen(
            [str(node), str(ROOT / "tests" / "node" / "render_message_text.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.react: Path | None = None

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        assert line, "the Node driver ended"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def parse(self, text: str, mentions: list[str] = MEMBERS) -> list[dict[str, Any]]:
        return self.ask({"parse": text, "mentions": mentions})["nodes"]

    def render(self, text: str, mentions: list[str] = MEMBERS, me: str = ME) -> str:
        assert self.react is not None, "render needs the `renderer` fixture"
        command = {
            "render": text,
            "mentions": mentions,
            "me": me,
            "props": ROOT_PROPS,
            "react": str(self.react),
        }
        return self.ask(command)["html"]

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    process = Driver()
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def renderer(driver: Driver, backend_process: Backend) -> Driver:
    """The driver, able to render: React from the frontend the shared backend built."""
    react = backend_process.workdir / ".web" / "node_modules"
    assert (react / "react-dom" / "server.js").exists(), f"no built frontend in {react}"
    driver.react = react
    return driver


# Expected trees, written short.
def t(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def code(text: str) -> dict[str, Any]:
    return {"type": "code", "text": text}


def block(text: str, lang: str = "") -> dict[str, Any]:
    return {"type": "codeblock", "text": text, "lang": lang}


def strong(*children: dict[str, Any]) -> dict[str, Any]:
    return {"type": "strong", "children": list(children)}


def em(*children: dict[str, Any]) -> dict[str, Any]:
    return {"type": "em", "children": list(children)}


def link(text: str, href: str | None = None) -> dict[str, Any]:
    return {"type": "link", "href": href or text, "text": text}


def mention(name: str, text: str | None = None) -> dict[str, Any]:
    return {"type": "mention", "name": name, "text": text or f"@{name}"}


PARSED = [
    # Text and line breaks
    ("two\nlines\n\nand a gap", [t("two\nlines\n\nand a gap")]),
    ("", []),
    # Formatting
    (
        "**bold**, *italic* and _italic_",
        [strong(t("bold")), t(", "), em(t("italic")), t(" and "), em(t("italic"))],
    ),
    ("**bold _and italic_**", [strong(t("bold "), em(t("and italic")))]),
    ("(*aside*)", [t("("), em(t("aside")), t(")")]),
    ("**a `**` b**", [strong(t("a "), code("**"), t(" b"))]),
    # Not inside words, not across lines, not with a space inside the marker
    ("snake_case_names and 2*3*4", [t("snake_case_names and 2*3*4")]),
    ("* not emphasis *", [t("* not emphasis *")]),
    ("*one\ntwo*", [t("*one\ntwo*")]),
    ("__dunder__ and ***three***", [t("__dunder__ and ***three***")]),
    # Unclosed markers stay as typed
    ("**open, *open, _open, `open, ```open", [t("**open, *open, _open, `open, ```open")]),
    ("*a **b* c**", [em(t("a **b")), t(" c**")]),
    # Code is literal
    ("`*no* https://x.org @bob`", [code("*no* https://x.org @bob")]),
    ("``not code``", [t("``not code``")]),
    ("```py\nprint('**x**')\n```\nafter", [block("print('**x**')", "py"), t("after")]),
    ("see ```a <b>\n  c``` ok", [t("see "), block("a <b>\n  c"), t(" ok")]),
    ("```\n\n  indented\n```", [block("\n  indented")]),
    ("``````", [t("``````")]),
    # Links
    ("see https://example.com/a?b=1#c.", [t("see "), link("https://example.com/a?b=1#c"), t(".")]),
    (
        "http://x.org, https://y.org; ok!?",
        [link("http://x.org"), t(", "), link("https://y.org"), t("; ok!?")],
    ),
    (
        "(https://en.wikipedia.org/wiki/Foo_(bar))",
        [t("("), link("https://en.wikipedia.org/wiki/Foo_(bar)"), t(")")],
    ),
    ("[https://x.org/a]", [t("["), link("https://x.org/a"), t("]")]),
    ("HTTPS://Example.COM/Path", [link("HTTPS://Example.COM/Path", "https://Example.COM/Path")]),
    (
        "mail mailto:bob@example.com?subject=hi!",
        [t("mail "), link("mailto:bob@example.com?subject=hi"), t("!")],
    ),
    (
        "**https://x.org** _https://x.org/a_b_",
        [strong(link("https://x.org")), t(" "), em(link("https://x.org/a_b"))],
    ),
    ("https://x.org/<script>", [link("https://x.org/"), t("<script>")]),
    # Not links
    (
        "javascript:alert(1) data:text/html,x vbscript:x",
        [t("javascript:alert(1) data:text/html,x vbscript:x")],
    ),
    (
        "xhttps://x.org https:// mailto:nobody http:///x",
        [t("xhttps://x.org https:// mailto:nobody http:///x")],
    ),
    # Mentions: members only, any case, never inside an email or a longer name
    ("@Bob hi @alice, @dave", [mention("bob", "@Bob"), t(" hi "), mention("alice"), t(", @dave")]),
    (
        "bob@example.com @bobby @bob.smith @bob.",
        [t("bob@example.com @bobby @bob.smith "), mention("bob"), t(".")],
    ),
    ("**@zoë** (@ZOË)", [strong(mention("Zoë", "@zoë")), t(" ("), mention("Zoë", "@ZOË"), t(")")]),
    (
        "https://x.org/@bob mailto:bob@x.org",
        [link("https://x.org/@bob"), t(" "), link("mailto:bob@x.org")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSED, ids=[text for text, _ in PARSED])
def test_parse(driver: Driver, text: str, expected: list[dict[str, Any]]) -> None:
    assert driver.parse(text) == expected


def test_mentions_need_the_members(driver: Driver) -> None:
    assert driver.parse("@bob", mentions=[]) == [t("@bob")]


RENDERED = [
    ('hi <b>there</b> & "you"', "hi &lt;b&gt;there&lt;/b&gt; &amp; &quot;you&quot;"),
    ("**b** *i* `c`", "<strong>b</strong> <em>i</em> <code>c</code>"),
    ("```js\nx < 1\n```", '<pre dir="auto" data-lang="js"><code>x &lt; 1</code></pre>'),
    (
        "go to https://x.org/?a=1&b=2.",
        (
            'go to <a href="https://x.org/?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">'
            "https://x.org/?a=1&amp;b=2</a>."
        ),
    ),
    (
        "@Bob and @alice",
        (
            '<span data-mention="bob" data-mention-me="">@Bob</span> and '
            '<span data-mention="alice">@alice</span>'
        ),
    ),
    ("javascript:alert(1)", "javascript:alert(1)"),
    ("a\nb", "a\nb"),
]


@pytest.mark.server
@pytest.mark.parametrize(("text", "inner"), RENDERED, ids=[text for text, _ in RENDERED])
def test_render(renderer: Driver, text: str, inner: str) -> None:
    root = '<div dir="auto" data-testid="message-text" class="bubble-text">'
    assert renderer.render(text) == f"{root}{inner}</div>"


# What the renderer may produce: per element, the attributes it may have (values checked below).
ALLOWED = {
    "div": {"dir", "data-testid", "class"},
    "strong": set(),
    "em": set(),
    "code": set(),
    "pre": {"dir", "data-lang"},
    "a": {"href", "target", "rel"},
    "span": {"data-mention", "data-mention-me"},
    "br": set(),
}
MARKERS = re.compile(r"[*_`\n]")


class Rendered(HTMLParser):
    """Checks each element as it is parsed; collects the text a reader sees, with a code
    block's language (a data attribute) put back where it was written."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.open: list[str] = []
        self.roots = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED, tag
        names = {name for name, _ in attrs}
        assert len(names) == len(attrs), attrs
        assert names <= ALLOWED[tag], (tag, attrs)
        values = dict(attrs)
        if not self.open:
            self.roots += 1
            assert tag == "div" and values == {
                "dir": "auto",
                "data-testid": "message-text",
                "class": "bubble-text",
            }
        else:
            assert tag != "div"
            assert "a" not in self.open, "nothing is nested in a link"
        if tag == "a":
            href = values.get("href") or ""
            assert re.match(r"(https?://|mailto:)", href), href
            assert values.get("target") == "_blank" and values.get("rel") == "noopener noreferrer"
        if tag == "span":
            assert values.get("data-mention") in MEMBERS
            if "data-mention-me" in values:
                assert values["data-mention-me"] == "" and values["data-mention"] == ME
        if tag == "pre":
            assert values.get("dir") == "auto"
            lang = values.get("data-lang") or ""
            assert re.fullmatch(r"[\w+#.-]{0,32}", lang), lang
            self.text.append(lang)
        assert "code" not in self.open, "code is literal: nothing inside"
        if self.open[-1:] == ["pre"]:
            assert tag == "code", "a pre holds its code only"
        if tag != "br":
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, (tag, self.open)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag == "br" and not attrs, tag

    def handle_data(self, data: str) -> None:
        assert self.open, "text outside the root"
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        raise AssertionError(f"a comment: {data!r}")

    def handle_decl(self, decl: str) -> None:
        raise AssertionError(f"a declaration: {decl!r}")

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"a processing instruction: {data!r}")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"a declaration: {data!r}")


def checked(html: str) -> str:
    """The text shown by `html`, once every element and attribute in it has passed."""
    parser = Rendered()
    parser.feed(html)
    parser.close()
    assert parser.roots == 1 and not parser.open, html
    return "".join(parser.text)


# Random text: whatever markup, markers, schemes and names mean something to anyone.
PIECES = [
    "**",
    "*",
    "_",
    "`",
    "```",
    "```py\n",
    "\n",
    " ",
    "  ",
    "\t",
    "\r\n",
    "http://",
    "https://",
    "mailto:",
    "javascript:",
    "JaVaScRiPt:alert(1)",
    "data:text/html,",
    "x.org",
    "example.com/a_(b)",
    "?q=1&r=2",
    "#frag",
    "<script>",
    "</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:x">',
    "&lt;",
    "&amp;",
    "&#x3c;",
    "&",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<?",
    "<!DOCTYPE html>",
    "@",
    "@bob",
    "@Alice",
    "@zoë",
    "@dave",
    "bob@x.org",
    "snake_case",
    "\u202e",
    "\u2067",
    "مرحبا",
    "שלום",
    "😀",
    "\u0301",
    "\x00",
]
# Pieces that do format, so that links, code and emphasis come out often enough.
FORMATTED = [
    "**bold**",
    "*em*",
    "_em_",
    "`code`",
    "`<b>`",
    "```\ncode <i>\n```",
    "```js\n**x**```",
    " https://x.org/a_(b)?c=1&d=<2> ",
    " http://x.org. ",
    " mailto:bob@x.org ",
    ' HTTPS://X.ORG/"onmouseover=alert(1) ',
    " https://x.org/javascript:alert(1) ",
]
ALPHABET = "<>&\"'*_`@:/()[]!?.,;=-# \nabcxyzBOB019é"
fragment = (
    st.sampled_from(PIECES)
    | st.sampled_from(FORMATTED)
    | st.text(alphabet=ALPHABET, min_size=1, max_size=4)
)
message = st.lists(fragment, max_size=30).map("".join)


@pytest.mark.server
@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
)
@given(text=message)
def test_no_markup_escapes_the_renderer(renderer: Driver, text: str) -> None:
    shown = checked(renderer.render(text))
    # Exactly the text written, less markers: all of it is there, in order, and nothing else.
    # (The examples above pin which markers go; line breaks are compared there too.)
    assert MARKERS.sub("", shown) == MARKERS.sub("", text)


def test_wrapper_keeps_the_bubble_text_props() -> None:
    """The Python side renders the JS component with the bidi isolate and the message's
    test id, and subscribes it to the vars it is given."""
    import reflex as rx

    from app.components.message_text import message_text

    rendered = str(message_text(rx.Var.create("hi"), ["bob"], "bob"))
    assert rendered.startswith("jsx(MessageText,")
    for expected in (
        'dir:"auto"',
        '"data-testid":"message-text"',
        '["unicodeBidi"] : "plaintext"',
        '["whiteSpace"] : "pre-wrap"',
        '["wordBreak"] : "break-word"',
        '["overflowX"] : "auto"',
        'text:"hi"',
        'me:"bob"',
    ):
        assert expected in rendered, expected
