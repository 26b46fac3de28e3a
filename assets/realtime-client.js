/**
 * realtime-client.js: one resilient `GET /api/sse` stream for integrators.
 *
 * An ES module with no dependencies and no build step, served by the app at
 * `/realtime-client.js`. Works in browsers (native EventSource) and in Node 20 with the
 * `eventsource` npm package passed in as `EventSource`.
 *
 *   import { connect } from "https://chat.example.com/realtime-client.js";
 *   const client = connect({ baseUrl: "https://chat.example.com", getToken });
 *   const off = client.subscribe("notification:new", (data, meta) => ...);
 *   client.subscribeToConversation(42, { onMessage, onTyping, onUnread });
 *   client.onStatus(({ status, attempt, delayMs }) => ...);
 *   client.close();
 *
 * What it adds to a bare EventSource:
 * - one EventSource per client, however many subscriptions (browsers allow only six
 *   HTTP/1.1 connections per origin);
 * - resumption: it tracks the last event id itself and reopens with `?lastEventId=`, because
 *   an EventSource that we reopen ourselves forgets the id it would have sent as a header;
 * - no duplicate delivery: an event whose id is not newer than the last one is dropped;
 * - exponential backoff with full jitter when the server refuses (401/429/5xx), which a bare
 *   EventSource gives up on, reset after a successful open;
 * - `getToken()` is asked for a fresh token when the server says 401 (expired, revoked);
 * - `resync` (the server cannot resume from our id) calls `onResync`: refetch over REST;
 * - receive latency: each event's `sentAt` (the server's publish, ms since the epoch)
 *   against the moment it arrived, as `meta.latencyMs` and in `client.latency`;
 * - 400, 403 and 404 (bad options, not a member of `tenant`), and 401 without `getToken`,
 *   end the client: status 'closed' with the `code` and a `reason`.
 */

/** Every event type of the contract; listeners for them are on every EventSource. */
export const EVENT_TYPES = Object.freeze([
  "chat:message",
  "chat:message-updated",
  "chat:message-deleted",
  "chat:conversation",
  "chat:typing",
  "chat:unread-count",
  "notification:new",
  "notification:read",
  "presence:update",
  "ping",
  "resync",
]);

/** Control events carry no id (a browser still reports the previous one on them). */
const CONTROL_TYPES = new Set(["ping", "resync"]);

/** Statuses the server will answer the same way however often we ask. */
const FATAL_STATUS = new Map([
  [400, "bad_request"],
  [403, "forbidden"],
  [404, "not_found"],
]);

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 1000, maxMs: 30000, factor: 2 });
const PROBE_TIMEOUT_MS = 5000;

/**
 * Open a client. Options:
 * - `baseUrl`: the app's origin (default: the page's origin in a browser);
 * - `token` and/or `getToken(info)`: a bearer token, or an (async) function returning one;
 *   `getToken` is called first when no `token` is given, and again after a 401;
 * - `EventSource`: the constructor (default `globalThis.EventSource`);
 * - `fetch`: used to learn why a connection was refused (default `globalThis.fetch`); a
 *   browser EventSource does not tell 401 from 429; `probe: false` skips asking;
 * - `events`: event types to keep, filtered by the server (`?events=a,b`);
 * - `tenant`: the active tenant id (`?tenant=`);
 * - `lastEventId`: resume from an id a previous run stored;
 * - `onResync(data)`: the server could not resume, refetch your state over REST;
 * - `onStatus(info)`: as `client.onStatus`; `onError(error, context)`: a handler or
 *   `getToken` threw (default: console.error; delivery to the other handlers goes on);
 * - `backoff`: `{ initialMs = 1000, maxMs = 30000, factor = 2 }`;
 * - `withCredentials`: send cookies cross-origin (the session cookie authenticates too).
 */
export function connect(options = {}) {
  return new RealtimeClient(options);
}

export class RealtimeClient {
  #options;
  #EventSource;
  #fetch;
  #backoff;
  #baseUrl;
  #token;
  #needsFreshToken = false;
  #source = null;
  #timer = null;
  #attempt = 0;
  #closed = false;
  #lastEventId = null;
  #acceptAnyNextId = false;
  #status = { status: "connecting", attempt: 0 };
  #handlers = new Map(); // type or "*" -> Set of { handler }
  #statusHandlers = new Set();
  #listenedTypes = new Set(EVENT_TYPES);
  #latency = new LatencyStats();

  constructor(options = {}) {
    this.#options = options;
    this.#EventSource = options.EventSource ?? globalThis.EventSource;
    if (typeof this.#EventSource !== "function") {
      throw new TypeError(
        "No EventSource: in Node pass the `eventsource` package's one as options.EventSource",
      );
    }
    const fetchImpl = options.fetch ?? globalThis.fetch;
    this.#fetch = typeof fetchImpl === "function" ? fetchImpl.bind(globalThis) : null;
    this.#backoff = { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) };
    const baseUrl = options.baseUrl ?? globalThis.location?.origin ?? "";
    this.#baseUrl = String(baseUrl).replace(/\/+$/, "");
    if (!this.#baseUrl) throw new TypeError("options.baseUrl is required outside a browser");
    new URL(`${this.#baseUrl}/api/sse`); // a malformed baseUrl throws here, not in a retry loop
    this.#token = options.token ?? null;
    this.#lastEventId = options.lastEventId ?? null;
    if (options.onStatus) this.#statusHandlers.add(options.onStatus);
    this.#openSource();
  }

  /** True while the stream is open. */
  get connected() {
    return this.#status.status === "open";
  }

  /** 'connecting' | 'open' | 'backoff' | 'closed'. */
  get status() {
    return this.#status.status;
  }

  /** The id of the last event delivered: store it to resume a later run (`lastEventId`). */
  get lastEventId() {
    return this.#lastEventId;
  }

  /**
   * Receive latency of the events read so far, pings included, in milliseconds:
   * `{count, lastMs, meanMs, maxMs}` over all of them and `p50Ms`, `p99Ms` over the last
   * 1024 (null before the first). It includes the network and the clocks' difference; after
   * a reconnect, replayed events count with their age.
   */
  get latency() {
    return this.#latency.snapshot();
  }

  /**
   * Call `handler(data, { type, id })` for each event of `type`; `"*"` receives every type
   * except `ping`. Returns the function that unsubscribes.
   */
  subscribe(type, handler) {
    if (typeof type !== "string" || !type) throw new TypeError("subscribe(type, handler): type");
    if (typeof handler !== "function") throw new TypeError("subscribe(type, handler): handler");
    const entry = { handler };
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(entry);
    if (type !== "*" && !this.#listenedTypes.has(type)) {
      // A type newer than this module: listen for it on the open source and the next ones.
      this.#listenedTypes.add(type);
      this.#source?.addEventListener(type, this.#onWireEvent);
    }
    return () => {
      this.#handlers.get(type)?.delete(entry);
    };
  }

  /**
   * The events of one conversation: `onMessage(message, meta)` gets the message object,
   * `onTyping(data, meta)` `{conversationId, userId, userName, isTyping}`,
   * `onUnread(data, meta)` `{conversationId, count, total}`. Returns one unsubscribe.
   */
  subscribeToConversation(conversationId, { onMessage, onTyping, onUnread } = {}) {
    const wanted = String(conversationId);
    const inConversation = (data) => data != null && String(data.conversationId) === wanted;
    const offs = [];
    if (onMessage) {
      offs.push(
        this.subscribe("chat:message", (data, meta) => {
          if (inConversation(data)) onMessage(data.message, meta);
        }),
      );
    }
    if (onTyping) {
      offs.push(
        this.subscribe("chat:typing", (data, meta) => {
          if (inConversation(data)) onTyping(data, meta);
        }),
      );
    }
    if (onUnread) {
      offs.push(
        this.subscribe("chat:unread-count", (data, meta) => {
          if (inConversation(data)) onUnread(data, meta);
        }),
      );
    }
    return () => offs.forEach((off) => off());
  }

  /**
   * `handler({ status, attempt, delayMs?, ceilingMs?, code?, reason? })` on every change,
   * and at once with the current status. Returns the function that unsubscribes.
   */
  onStatus(handler) {
    if (typeof handler !== "function") throw new TypeError("onStatus(handler): handler");
    this.#statusHandlers.add(handler);
    this.#safeCall(handler, [this.#status], "status handler");
    return () => {
      this.#statusHandlers.delete(handler);
    };
  }

  /** Stop for good: the stream closes and no handler is called any more. */
  close() {
    if (this.#closed) return;
    this.#stop({ reason: "client_closed" });
  }

  // -- connecting -------------------------------------------------------------------------

  async #openSource() {
    if (this.#closed) return;
    this.#setStatus({ status: "connecting", attempt: this.#attempt });
    let token;
    try {
      token = await this.#currentToken();
    } catch (error) {
      this.#report(error, "getToken");
      if (!this.#closed) this.#scheduleRetry({ reason: "token_unavailable" });
      return;
    }
    if (this.#closed) return;
    const url = this.#streamUrl(token);
    const init = this.#options.withCredentials ? { withCredentials: true } : undefined;
    const source = new this.#EventSource(url, init);
    this.#source = source;
    let opened = false;
    for (const type of this.#listenedTypes) source.addEventListener(type, this.#onWireEvent);
    source.onopen = () => {
      if (source !== this.#source) return;
      opened = true;
      this.#attempt = 0;
      this.#setStatus({ status: "open", attempt: 0 });
    };
    source.onerror = (event) => {
      if (source !== this.#source) return;
      // We reconnect ourselves, whatever the EventSource would do: a native one gives up on
      // a refusal, and our own reopening carries the latest id and token.
      source.close();
      this.#source = null;
      if (opened) this.#scheduleRetry({ reason: "dropped" });
      else this.#onRefused(event, url);
    };
  }

  async #currentToken() {
    const { getToken } = this.#options;
    if (getToken && (this.#token == null || this.#needsFreshToken)) {
      const reason = this.#token == null ? "initial" : "expired";
      const token = await getToken({ reason });
      if (typeof token !== "string" || !token) throw new Error("getToken() returned no token");
      this.#token = token;
      this.#needsFreshToken = false;
    }
    return this.#token;
  }

  #streamUrl(token) {
    const url = new URL(`${this.#baseUrl}/api/sse`);
    if (token) url.searchParams.set("access_token", token);
    const { events, tenant } = this.#options;
    if (events?.length) url.searchParams.set("events", [].concat(events).join(","));
    if (tenant != null) url.searchParams.set("tenant", String(tenant));
    if (this.#lastEventId) url.searchParams.set("lastEventId", this.#lastEventId);
    return url.toString();
  }

  /** The stream failed before it opened: learn the status code, then decide. */
  async #onRefused(event, url) {
    const code = typeof event?.code === "number" ? event.code : await this.#probe(url);
    if (this.#closed || this.#source !== null || this.#timer !== null) return;
    const { getToken } = this.#options;
    const fatal = FATAL_STATUS.get(code) ?? (code === 401 && !getToken ? "unauthorized" : null);
    if (fatal) {
      this.#stop({ reason: fatal, code });
      return;
    }
    // A new token on a 401; also when there is no way to learn the code (no fetch), since
    // an expired token is the one refusal a retry with the same URL can never get past.
    if (code === 401 || (code === undefined && getToken)) this.#needsFreshToken = true;
    this.#scheduleRetry({ reason: code === null ? "unreachable" : "refused", code });
  }

  /**
   * The status code the stream URL answers now: a browser EventSource does not tell.
   * `null` when the server cannot be reached, `undefined` when there is no fetch.
   */
  async #probe(url) {
    if (!this.#fetch || this.#options.probe === false) return undefined;
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
    try {
      const response = await this.#fetch(url, {
        signal: controller.signal,
        cache: "no-store",
        headers: { Accept: "text/event-stream" },
        credentials: this.#options.withCredentials ? "include" : "same-origin",
      });
      return response.status;
    } catch {
      return null;
    } finally {
      clearTimeout(timeout);
      controller.abort(); // a probe that got a stream must not keep it (nor its slot)
    }
  }

  /** Exponential backoff with full jitter: a random wait below a ceiling that doubles. */
  #scheduleRetry({ reason, code }) {
    this.#attempt += 1;
    const { initialMs, maxMs, factor } = this.#backoff;
    const ceilingMs = Math.min(maxMs, initialMs * factor ** (this.#attempt - 1));
    const delayMs = Math.floor(Math.random() * ceilingMs);
    const attempt = this.#attempt;
    this.#setStatus({ status: "backoff", attempt, delayMs, ceilingMs, reason, code });
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#openSource();
    }, delayMs);
  }

  #stop(info) {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#source?.close();
    this.#source = null;
    this.#setStatus({ status: "closed", attempt: this.#attempt, ...info });
  }

  // -- delivering -------------------------------------------------------------------------

  #onWireEvent = (event) => {
    if (event.target !== this.#source || this.#closed) return;
    const type = event.type;
    const id = CONTROL_TYPES.has(type) ? null : event.lastEventId || null;
    if (id !== null) {
      if (!this.#acceptAnyNextId && !isNewer(id, this.#lastEventId)) return; // seen already
      this.#lastEventId = id;
      this.#acceptAnyNextId = false;
    }
    if (type === "resync") {
      // The server no longer knows our id (restart, too old): the next id starts anew.
      this.#acceptAnyNextId = true;
    }
    const data = parseData(event.data);
    const sentAt = typeof data?.sentAt === "number" ? data.sentAt : null;
    const latencyMs = sentAt === null ? null : Math.max(Date.now() - sentAt, 0);
    if (latencyMs !== null) this.#latency.add(latencyMs);
    const meta = { type, id, sentAt, latencyMs };
    if (type === "resync" && this.#options.onResync) {
      this.#safeCall(this.#options.onResync, [data, meta], "onResync");
    }
    this.#dispatch(type, data, meta);
    if (type !== "ping") this.#dispatch("*", data, meta);
  };

  #dispatch(key, data, meta) {
    const entries = this.#handlers.get(key);
    if (!entries) return;
    for (const entry of [...entries]) {
      // Unsubscribed by an earlier handler of this same event: it must not run.
      if (!entries.has(entry)) continue;
      this.#safeCall(entry.handler, [data, meta], `handler for ${meta.type}`);
    }
  }

  #setStatus(info) {
    this.#status = Object.freeze({ ...info });
    for (const handler of [...this.#statusHandlers]) {
      this.#safeCall(handler, [this.#status], "status handler");
    }
  }

  /** One integrator's failing handler must not stop delivery to the others. */
  #safeCall(fn, args, context) {
    try {
      fn(...args);
    } catch (error) {
      this.#report(error, context);
    }
  }

  #report(error, context) {
    if (this.#options.onError) this.#options.onError(error, context);
    else console.error(`realtime-client: ${context} failed`, error);
  }
}

/** Receive latency figures: totals over every sample, quantiles over a recent window. */
export class LatencyStats {
  static WINDOW = 1024;
  #count = 0;
  #totalMs = 0;
  #lastMs = null;
  #maxMs = null;
  #recent = [];
  #next = 0; // where the next sample goes once the window is full

  add(ms) {
    this.#count += 1;
    this.#totalMs += ms;
    this.#lastMs = ms;
    this.#maxMs = this.#maxMs === null ? ms : Math.max(this.#maxMs, ms);
    if (this.#recent.length < LatencyStats.WINDOW) this.#recent.push(ms);
    else {
      this.#recent[this.#next] = ms;
      this.#next = (this.#next + 1) % LatencyStats.WINDOW;
    }
  }

  /** The nearest-rank quantile `q` (0..1) of the recent window, or null. */
  quantile(q) {
    if (!(q >= 0 && q <= 1)) throw new RangeError("a quantile is between 0 and 1");
    if (this.#recent.length === 0) return null;
    const ordered = [...this.#recent].sort((a, b) => a - b);
    return ordered[Math.max(Math.ceil(q * ordered.length) - 1, 0)];
  }

  snapshot() {
    return Object.freeze({
      count: this.#count,
      lastMs: this.#lastMs,
      meanMs: this.#count ? this.#totalMs / this.#count : null,
      maxMs: this.#maxMs,
      p50Ms: this.quantile(0.5),
      p99Ms: this.quantile(0.99),
    });
  }
}

/** `a` is newer than `b` (ids are `<epoch>-<seq>`, digits of any length, compared exactly). */
export function isNewer(a, b) {
  if (!b) return true;
  const left = splitId(a);
  const right = splitId(b);
  if (!left || !right) return a !== b;
  return compareDigits(left[0], right[0]) > 0 ||
    (left[0] === right[0] && compareDigits(left[1], right[1]) > 0);
}

function splitId(id) {
  const match = /^0*(\d+)-0*(\d+)$/.exec(String(id));
  return match ? [match[1], match[2]] : null;
}

function compareDigits(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function parseData(raw) {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
