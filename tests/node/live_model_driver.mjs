/**
 * Node 20 side of tests/test_live_model.py: the chat page's model (assets/live_model.js),
 * one per named tab, driven by JSON-line commands on stdin:
 *   {"tab", "items": [feed items]}  applies them as the page's store does, and answers
 *   {"vars": <the Reflex vars the store would write>, "needsList": bool}.
 * `now` (epoch seconds) may be given with the items, for typing. Ends when stdin closes.
 */
import { createInterface } from "node:readline";

import { applyItem, emptyModel, forgetSilentTypists, reflexVars } from "../../assets/live_model.js";

const models = new Map();

// The store's own dispatch (applyItem), and `{"forget": true}` for its typing timer.
function apply(model, item, now) {
  if (item.forget) return [forgetSilentTypists(model, now), false];
  return applyItem(model, item, now);
}

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  let model = models.get(command.tab) ?? emptyModel();
  let needsList = false;
  for (const item of command.items) {
    const [next, needs] = apply(model, item, command.now ?? Date.now() / 1000);
    model = next;
    needsList ||= needs;
  }
  models.set(command.tab, model);
  process.stdout.write(`${JSON.stringify({ vars: reflexVars(model), needsList })}\n`);
});
input.on("close", () => process.exit(0));
