/**
 * Node 20 side of tests/test_live_model.py: the chat page's model (assets/live_model.js),
 * one per named tab, driven by JSON-line commands on stdin:
 *   {"tab", "items": [feed items]}  applies them as the page's store does, and answers
 *   {"vars": <the Reflex vars the store would write>, "needsList": bool}.
 * `now` (epoch seconds) may be given with the items, for typing. Ends when stdin closes.
 */
import { createInterface } from "node:readline";

import {
  applyClosed,
  applyConversation,
  applyEvent,
  applyHistory,
  applySnapshot,
  emptyModel,
  forgetSilentTypists,
  reflexVars,
} from "../../assets/live_model.js";

const models = new Map();

function apply(model, item, now) {
  if (item.snapshot) return [applySnapshot(model, item.snapshot), false];
  if (item.history) return [applyHistory(model, item.history), false];
  if (item.conversation) return [applyConversation(model, item.conversation), false];
  if (item.event) return applyEvent(model, item.event, item, now);
  if (item.closed) return [applyClosed(model), false];
  if (item.forget) return [forgetSilentTypists(model, now), false];
  throw new Error(`unknown feed item ${JSON.stringify(item)}`);
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
