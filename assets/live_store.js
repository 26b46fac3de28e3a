// The chat page's store: applies the tab's feed (FeedState.feed, app/state/tab_feed.py)
// to a model (live_model.js) and writes what changed into Reflex's state, which the
// components render. It is the only writer of the live vars (each state's LIVE_VARS).
//
// It listens to Reflex's state store directly, not through a render: each frame's
// dispatch calls it at once, so two frames in a row are two updates, never one.
import { useContext, useEffect } from "react";
import { StateStoreContext, eventLoop } from "$/utils/context-registry";
import { ReflexEvent } from "$/utils/state";
import {
  applyItem,
  emptyModel,
  forgetSilentTypists,
  nextTypistExpiry,
  reflexVars,
} from "./live_model.js";

const FIELD_MARKER = "_rx_state_";
// A list scrolled to within this of its end follows new messages.
const FOLLOW_PX = 80;

function messageList() {
  return document.getElementById("message-list");
}

function atEnd(el) {
  return !el || el.scrollHeight - el.scrollTop - el.clientHeight <= FOLLOW_PX;
}

function scrollToEnd() {
  // After React has rendered the new rows.
  requestAnimationFrame(() => {
    const el = messageList();
    if (el) el.scrollTop = el.scrollHeight;
  });
}

export function LiveStore({
  feedState,
  liveState,
  chatState,
  presenceState,
  notificationState,
  reloadEvent,
  sessionEvent,
  listenEvent,
}) {
  const store = useContext(StateStoreContext);
  useEffect(() => {
    if (!store) return undefined;
    const states = {
      live: liveState,
      chat: chatState,
      presence: presenceState,
      notifications: notificationState,
    };
    let model = emptyModel();
    let written = {};
    let lastFeed = store.getSnapshot(feedState)?.["feed" + FIELD_MARKER];
    let typingTimer = null;

    const write = () => {
      const vars = reflexVars(model);
      for (const [part, values] of Object.entries(vars)) {
        const delta = {};
        for (const [name, value] of Object.entries(values)) {
          const key = name + FIELD_MARKER;
          if (!Object.is(written[states[part] + key], value)) {
            delta[key] = value;
            written[states[part] + key] = value;
          }
        }
        if (Object.keys(delta).length) store.dispatchers[states[part]]?.(delta);
      }
    };

    const scheduleForget = () => {
      clearTimeout(typingTimer);
      const next = nextTypistExpiry(model);
      if (next === Infinity) return;
      typingTimer = setTimeout(() => {
        model = forgetSilentTypists(model, Date.now() / 1000);
        write();
        scheduleForget();
      }, Math.max(0, next * 1000 - Date.now()) + 50);
    };

    const apply = (items) => {
      let askForList = false;
      let follow = false;
      let then = null;
      const before = model;
      for (const item of items) {
        const [next, needsList] = applyItem(model, item, Date.now() / 1000);
        if (item.event && next.messages !== model.messages) {
          const last = next.messages[next.messages.length - 1];
          follow ||= last.mine || atEnd(messageList());
        }
        // Signed out elsewhere: the session check sends the tab to sign in. Cut off as a
        // slow consumer: a new listener (and snapshot) picks up where it is.
        if (item.closed?.reason === "session_ended") then = sessionEvent;
        else if (item.closed?.reason === "slow_consumer") then = listenEvent;
        model = next;
        askForList ||= needsList;
      }
      if (model !== before) {
        write();
        if (model.typists !== before.typists) scheduleForget();
        if (follow) scrollToEnd();
      }
      if (askForList) eventLoop.addEvents([ReflexEvent(reloadEvent, {})]);
      if (then) eventLoop.addEvents([ReflexEvent(then, {})]);
    };

    const unsubscribe = store.subscribe(feedState, () => {
      const feed = store.getSnapshot(feedState)?.["feed" + FIELD_MARKER];
      if (feed === lastFeed) return;
      lastFeed = feed;
      if (Array.isArray(feed) && feed.length) apply(feed);
    });
    return () => {
      unsubscribe();
      clearTimeout(typingTimer);
    };
  }, [
    store,
    feedState,
    liveState,
    chatState,
    presenceState,
    notificationState,
    reloadEvent,
    sessionEvent,
    listenEvent,
  ]);
  return null;
}
