/**
 * Drives assets/realtime-client.js by commands and reports everything it sees as records.
 *
 * The same harness runs in Node (tests/node/driver.mjs, JSON lines over stdin/stdout) and in
 * Chromium (tests/test_client_js_browser.py loads it into a page), so both test files speak
 * one protocol. It imports nothing: the caller passes `connect` and the platform's pieces.
 *
 * Commands (each answers one `{kind: "ack", seq}` record, or `{kind: "failed", seq, error}`):
 *   {op: "connect", client, baseUrl, token?, login?: {username, password}, events?, tenant?,
 *    backoff?}            login: the client's getToken signs in over REST (and is counted)
 *   {op: "subscribe", client, handler, type}
 *   {op: "subscribeToConversation", client, handler, conversationId}
 *   {op: "unsubscribe", handler}
 *   {op: "latency", client}  reports the client's `latency` figures
 *   {op: "close", client}
 * Records: {kind: "event", client, handler, type, id, data, latencyMs},
 *   {kind: "latency", client, stats}, {kind: "status", client, ...},
 *   {kind: "resync", client, data}, {kind: "token", client, reason, token}, {kind: "error", ...}
 */
export function createHarness({ connect, EventSource, emit }) {
  const clients = new Map();
  const unsubscribers = new Map();

  const signIn = (baseUrl, client, { username, password }) => async ({ reason }) => {
    const response = await fetch(`${baseUrl}/api/auth/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (!response.ok) throw new Error(`sign-in answered ${response.status}`);
    const { access_token: token } = await response.json();
    emit({ kind: "token", client, reason, token });
    return token;
  };

  const operations = {
    connect({ client, baseUrl, token, login, events, tenant, backoff }) {
      const instance = connect({
        baseUrl,
        EventSource,
        token,
        getToken: login ? signIn(baseUrl, client, login) : undefined,
        events,
        tenant,
        backoff,
        onResync: (data) => emit({ kind: "resync", client, data }),
        onStatus: (info) =>
          emit({ kind: "status", client, ...info, connected: clients.get(client)?.connected }),
        onError: (error, context) => emit({ kind: "error", client, context, error: String(error) }),
      });
      clients.set(client, instance);
    },
    subscribe({ client, handler, type }) {
      const off = clients.get(client).subscribe(type, (data, meta) =>
        emit({
          kind: "event",
          client,
          handler,
          type: meta.type,
          id: meta.id,
          data,
          latencyMs: meta.latencyMs,
        }),
      );
      unsubscribers.set(handler, off);
    },
    subscribeToConversation({ client, handler, conversationId }) {
      const record = (type) => (data, meta) =>
        emit({ kind: "event", client, handler, type, id: meta.id, data });
      const off = clients.get(client).subscribeToConversation(conversationId, {
        onMessage: record("message"),
        onTyping: record("typing"),
        onUnread: record("unread"),
      });
      unsubscribers.set(handler, off);
    },
    unsubscribe({ handler }) {
      unsubscribers.get(handler)();
      unsubscribers.delete(handler);
    },
    latency({ client }) {
      emit({ kind: "latency", client, stats: clients.get(client).latency });
    },
    close({ client }) {
      clients.get(client).close();
    },
  };

  return {
    run(command) {
      try {
        operations[command.op](command);
        emit({ kind: "ack", seq: command.seq });
      } catch (error) {
        emit({ kind: "failed", seq: command.seq, error: String(error?.stack ?? error) });
      }
    },
    closeAll() {
      for (const instance of clients.values()) instance.close();
    },
  };
}
