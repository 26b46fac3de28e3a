/**
 * Node 20 side of tests/test_client_js_node.py: assets/realtime-client.js with the
 * `eventsource` package, driven by JSON-line commands on stdin, reporting JSON lines on
 * stdout (see harness.mjs for the protocol). Ends when stdin closes.
 */
import { createInterface } from "node:readline";
import { EventSource } from "eventsource";

import { connect } from "../../assets/realtime-client.js";
import { createHarness } from "./harness.mjs";

const emit = (record) => process.stdout.write(`${JSON.stringify({ ...record, at: Date.now() })}\n`);
const harness = createHarness({ connect, EventSource, emit });

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim()) harness.run(JSON.parse(line));
});
input.on("close", () => {
  harness.closeAll();
  process.exit(0);
});
emit({ kind: "ready" });
