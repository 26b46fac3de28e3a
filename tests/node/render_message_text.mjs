/**
 * Node 20 side of tests/test_message_text.py, driven by JSON-line commands on stdin, one
 * answer line each:
 *   {"parse": text, "mentions": [names]}  -> {"nodes": parseMessage(...)}
 *   {"render": text, "mentions", "me", "props", "react": dir}
 *                                         -> {"html": renderToStaticMarkup(<MessageText .../>)}
 * A command that throws answers {"error": stack}.
 * The parser (assets/message_format.js) needs nothing. Rendering needs React, which the
 * project has only in a built frontend: the first render's "react" names that build's
 * node_modules, and a resolve hook sends the bare "react..." imports of
 * assets/message_text.js there.
 * Ends when stdin closes.
 */
import { register } from "node:module";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

import { parseMessage } from "../../assets/message_format.js";

let renderer = null;

async function loadRenderer(modules) {
  if (!modules) throw new Error("the first render names React's node_modules (\"react\")");
  // Resolved as if imported from a file beside that node_modules folder.
  const parent = pathToFileURL(`${modules}/../package.json`).href;
  const hooks = `
    export async function resolve(specifier, context, next) {
      if (/^react(-dom)?(\\/|$)/.test(specifier)) {
        return next(specifier, { ...context, parentURL: ${JSON.stringify(parent)} });
      }
      return next(specifier, context);
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
  const [{ createElement }, { renderToStaticMarkup }, { MessageText }] = await Promise.all([
    import("react"),
    import("react-dom/server"),
    import("../../assets/message_text.js"),
  ]);
  return ({ render: text, mentions, me, props }) =>
    renderToStaticMarkup(createElement(MessageText, { text, mentions, me, ...(props || {}) }));
}

async function answer(command) {
  if ("parse" in command) return { nodes: parseMessage(command.parse, command.mentions || []) };
  renderer ??= await loadRenderer(command.react);
  return { html: renderer(command) };
}

// One command at a time, in order: a render waits for React to load.
let queue = Promise.resolve();
const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let reply;
    try {
      reply = await answer(JSON.parse(line));
    } catch (error) {
      reply = { error: String(error && error.stack ? error.stack : error) };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  });
});
input.on("close", () => queue.then(() => process.exit(0)));
