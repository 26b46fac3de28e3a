// A message's text with its formatting (issue 15): what message_format.js parses, rendered
// with React.createElement only. User text only ever becomes React children (escaped by
// React) or the value of a data attribute; never dangerouslySetInnerHTML. Wrapped as an
// rx.Component by app/components/message_text.py.
//
// The root is a <div>, not a <p>, because a code block's <pre> may not sit inside a <p>. Line
// breaks stay "\n" in the text: the root needs white-space: pre-wrap (message_text.py sets
// it), so there are no <br>s. The caller's props (className from Reflex's css, style, dir,
// data-testid) go to the root, so the bidi isolation of app/components/bidi.py holds.
import { createElement as h } from "react";

import { parseMessage } from "./message_format.js";

// The parser only makes such links; checked again here so nothing else can reach an href.
const SAFE_HREF = /^(https?:\/\/|mailto:)/;

function renderNode(node, key, me) {
  switch (node.type) {
    case "text":
      return node.text;
    case "code":
      return h("code", { key }, node.text);
    case "codeblock":
      // Its own paragraph for bidi: code written left to right stays so in an RTL message.
      return h("pre", { key, dir: "auto", "data-lang": node.lang || undefined },
        h("code", null, node.text));
    case "strong":
    case "em":
      return h(node.type, { key }, node.children.map((child, i) => renderNode(child, i, me)));
    case "link":
      if (!SAFE_HREF.test(node.href)) return node.text;
      return h("a", { key, href: node.href, target: "_blank", rel: "noopener noreferrer" },
        node.text);
    case "mention": {
      const mine = Boolean(me) && node.name.toLowerCase() === me.toLowerCase();
      return h("span", { key, "data-mention": node.name, "data-mention-me": mine ? "" : undefined },
        node.text);
    }
    default:
      return null;
  }
}

export function MessageText({ text, mentions, me, ...rootProps }) {
  const nodes = parseMessage(text, Array.isArray(mentions) ? mentions : []);
  const viewer = typeof me === "string" ? me : "";
  return h("div", rootProps, nodes.map((node, i) => renderNode(node, i, viewer)));
}
