// The message text format (issue 15), as a pure parser: no React, no DOM, so Node tests it
// directly (tests/test_message_text.py). message_text.js renders what it returns.
//
// parseMessage(text, mentionNames) returns a list of nodes:
//   {type: "text", text}                 plain text, newlines kept (the renderer's root is
//                                        white-space: pre-wrap)
//   {type: "code", text}                 `inline code`
//   {type: "codeblock", text, lang}      ```fenced block```, lang "" when none
//   {type: "strong", children}           **bold**
//   {type: "em", children}               *italic* or _italic_
//   {type: "link", href, text}           a bare http://, https:// or mailto: URL
//   {type: "mention", name, text}        @name for a name in mentionNames
//
// Rules, deliberately smaller than Markdown (keep them when "fixing" an edge case):
// - Anything the rules do not take is text, markers included: an unclosed `**`, a lone
//   backtick, `__x__` and runs of three or more `*` stay as typed. There is no HTML, no
//   escaping with backslashes, no [label](url) links, so nothing can hide a href.
// - Fences: ``` opens a code block anywhere and the next ``` closes it. A word right after
//   the opening fence followed by a newline is the language; a newline right after the
//   opening fence (or the language), one right before the closing fence and one right after
//   it belong to the fences (a <pre> is a line of its own). An empty block stays text.
// - Code spans and blocks are literal: no formatting, links or mentions inside. An inline
//   code span is one backtick, text without a newline or backtick, one backtick.
// - Emphasis does not cross a line break and never starts or ends inside a word, for `*`
//   as for `_` (snake_case_names, 2*3*4 stay text): an opener has no letter or digit before
//   it and no space after it, a closer no space before it and no letter or digit after it.
// - Links start at a scheme not preceded by a letter or digit and run to whitespace or one
//   of <>"`; trailing .,;:!?*_~' are not part of them, nor a trailing ) or ] without its
//   opener inside the link (GitHub's autolink rules). The scheme is lower-cased in href.
// - Mentions: @ not preceded by a letter, digit or one of _.+-@ (so not inside an email),
//   then a name from mentionNames (case-insensitive, longest first), then no letter, digit,
//   or _ and no ./- followed by one (so @bob does not match in @bobby or @bob.smith).

const FENCE = "```";
const LANGUAGE_LINE = /^([\w+#.-]{1,32})?\n/;
const SCHEME = /^(https?:\/\/|mailto:)/i;
const URL_RUN = /^[^\s<>"`]+/;
const TRAILING = ".,;:!?*_~'";
const WORD = /[\p{L}\p{N}]/u;
const NAME_CHAR = /[\p{L}\p{N}_]/u;
const BEFORE_MENTION = /[\p{L}\p{N}_.+\-@]/u;
const SPACE = /\s/u;

export function parseMessage(text, mentionNames = []) {
  const source = typeof text === "string" ? text : "";
  const names = [...new Set((mentionNames || []).filter((n) => typeof n === "string" && n))]
    .sort((a, b) => b.length - a.length);
  const nodes = [];
  for (const segment of splitFences(source)) {
    if (segment.code) nodes.push({ type: "codeblock", text: segment.text, lang: segment.lang });
    else nodes.push(...inline(segment.text, names));
  }
  return merged(nodes);
}

// The text cut into fenced code blocks and the plain runs between them.
function splitFences(source) {
  const segments = [];
  let plainFrom = 0;
  let searchFrom = 0;
  for (;;) {
    const open = source.indexOf(FENCE, searchFrom);
    if (open < 0) break;
    let start = open + FENCE.length;
    const line = LANGUAGE_LINE.exec(source.slice(start));
    const lang = line && line[1] ? line[1] : "";
    if (line) start += line[0].length;
    const close = source.indexOf(FENCE, start);
    if (close < 0) break;
    let body = source.slice(start, close);
    if (body.endsWith("\n")) body = body.slice(0, -1);
    if (!body) {
      searchFrom = open + FENCE.length; // nothing inside: this opening fence is text
      continue;
    }
    if (open > plainFrom) segments.push({ code: false, text: source.slice(plainFrom, open) });
    segments.push({ code: true, text: body, lang });
    // A block is its own line: the line break after it would be an empty line.
    const after = close + FENCE.length;
    plainFrom = searchFrom = source[after] === "\n" ? after + 1 : after;
  }
  if (plainFrom < source.length) segments.push({ code: false, text: source.slice(plainFrom) });
  return segments;
}

// Inline nodes of a run without fences: atoms first (code spans, links, mentions, emphasis
// delimiters, text), then the delimiters paired.
function inline(s, names) {
  return pairDelimiters(atoms(s, names));
}

function atoms(s, names) {
  const out = [];
  let i = 0;
  const text = (t) => out.push({ type: "text", text: t });
  while (i < s.length) {
    const c = s[i];
    if (c === "\n") {
      out.push({ type: "newline" });
      i += 1;
    } else if (c === "`") {
      const run = runLength(s, i);
      const end = run === 1 ? s.indexOf("`", i + 1) : -1;
      const body = end > i + 1 ? s.slice(i + 1, end) : "";
      if (body && !body.includes("\n") && s[end + 1] !== "`") {
        out.push({ type: "code", text: body });
        i = end + 1;
      } else {
        text(s.slice(i, i + run));
        i += run;
      }
    } else if (c === "*" || c === "_") {
      const d = delimiter(s, i);
      if (d) out.push(d);
      else text(s.slice(i, i + runLength(s, i)));
      i += d ? d.text.length : runLength(s, i);
    } else {
      const link = (c === "h" || c === "H" || c === "m" || c === "M") && linkAt(s, i);
      const mention = !link && c === "@" && mentionAt(s, i, names);
      const found = link || mention;
      if (found) {
        out.push(found);
        i += found.text.length;
      } else {
        text(c);
        i += 1;
      }
    }
  }
  return out;
}

function runLength(s, i) {
  let j = i;
  while (s[j] === s[i]) j += 1;
  return j - i;
}

// A `*`, `**` or `_` that may open or close emphasis here, or null (then it is text).
function delimiter(s, i) {
  const run = runLength(s, i);
  if (run > (s[i] === "*" ? 2 : 1)) return null;
  const before = s[i - 1];
  const after = s[i + run];
  const open = after !== undefined && !SPACE.test(after) && !(before && WORD.test(before));
  const close = before !== undefined && !SPACE.test(before) && !(after && WORD.test(after));
  if (!open && !close) return null;
  return { type: "delimiter", text: s.slice(i, i + run), open, close };
}

function linkAt(s, i) {
  if (i > 0 && WORD.test(s[i - 1])) return null;
  const rest = s.slice(i);
  const scheme = SCHEME.exec(rest);
  if (!scheme) return null;
  const url = trimUrl(URL_RUN.exec(rest)[0]);
  const target = url.slice(scheme[0].length);
  const valid = scheme[0].toLowerCase() === "mailto:"
    ? /^[^@/]+@[\p{L}\p{N}]/u.test(target)
    : /^[\p{L}\p{N}[]/u.test(target);
  if (!valid) return null;
  return { type: "link", href: scheme[0].toLowerCase() + target, text: url };
}

function trimUrl(url) {
  for (;;) {
    const last = url[url.length - 1];
    const unbalanced = (closer, opener) =>
      last === closer && count(url, opener) < count(url, closer);
    if (TRAILING.includes(last) || unbalanced(")", "(") || unbalanced("]", "[")) {
      url = url.slice(0, -1);
    } else {
      return url;
    }
  }
}

function count(s, c) {
  return s.split(c).length - 1;
}

function mentionAt(s, i, names) {
  if (i > 0 && BEFORE_MENTION.test(s[i - 1])) return null;
  for (const name of names) {
    const written = s.slice(i + 1, i + 1 + name.length);
    if (written.toLowerCase() !== name.toLowerCase()) continue;
    const j = i + 1 + name.length;
    const next = s[j];
    const glued = next !== undefined && (NAME_CHAR.test(next)
      || ((next === "." || next === "-") && s[j + 1] !== undefined && NAME_CHAR.test(s[j + 1])));
    if (!glued) return { type: "mention", name, text: `@${written}` };
  }
  return null;
}

// Emphasis from the delimiters: a stack of open frames; a closer ends the nearest open frame
// of its kind (frames opened after it fall back to text), a line break or the end turns
// every open frame back into text.
function pairDelimiters(list) {
  const root = { children: [] };
  const stack = [root];
  const top = () => stack[stack.length - 1];
  const unwindTo = (depth) => {
    while (stack.length > depth) {
      const frame = stack.pop();
      top().children.push({ type: "text", text: frame.marker }, ...frame.children);
    }
  };
  for (const atom of list) {
    if (atom.type === "newline") {
      unwindTo(1);
      root.children.push({ type: "text", text: "\n" });
    } else if (atom.type === "delimiter") {
      const depth = atom.close
        ? stack.findLastIndex((frame, k) => k > 0 && frame.marker === atom.text)
        : -1;
      if (depth > 0) {
        unwindTo(depth + 1);
        const frame = stack.pop();
        const type = frame.marker === "**" ? "strong" : "em";
        top().children.push({ type, children: merged(frame.children) });
      } else if (atom.open) {
        stack.push({ marker: atom.text, children: [] });
      } else {
        top().children.push({ type: "text", text: atom.text });
      }
    } else {
      top().children.push(atom);
    }
  }
  unwindTo(1);
  return root.children;
}

// Adjacent text nodes joined into one (the tests compare trees).
function merged(nodes) {
  const out = [];
  for (const node of nodes) {
    const last = out[out.length - 1];
    if (node.type === "text" && last && last.type === "text") last.text += node.text;
    else if (node.type === "text" && !node.text) continue;
    else out.push(node.type === "text" ? { ...node } : node);
  }
  return out;
}
