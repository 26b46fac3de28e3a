// The chat page's store: applies the tab's feed (FeedState.feed, app/state/tab_feed.py)
// to a model (live_model.js) and writes what changed into Reflex's state, which the
// components render. It is the only writer of the live vars (each state's LIVE_VARS).
//
// It listens to Reflex's state store directly, not through a render: each frame's
// dispatch calls it at once, so two frames in a row are two updates, never one.
import { useContext, useEffect } from "react";
import { StateStoreContext, eventLoop } from "$/utils/context-registry";
import { ReflexEvent, refs } from "$/utils/state";
import {
  applyItem,
  emptyModel,
  forgetSilentTypists,
  nextTypistExpiry,
  reflexVars,
} from "./live_model.js";

import { createDesktopNotify } from "./desktop_notify.js";
import { createMentionPicker } from "./mention_picker.js";
import { createMessageView } from "./message_view.js";
import { stateVar } from "./view_vars.js";

const FIELD_MARKER = "_rx_state_";
// Left by a tab that switched workspace (app/state/browser_session.py).
const SWITCH_KEY = "chat:workspace-switch";
const SWITCH_NEWS_MS = 30_000;

function tabId() {
  let id = sessionStorage.getItem("chat:tab");
  if (!id) {
    id = Math.random().toString(36).slice(2);
    sessionStorage.setItem("chat:tab", id);
  }
  return id;
}

// Signing out elsewhere sends the tab to sign in at once, but a workspace switch signs
// the old session out a moment before the switching tab has stored the new one: wait
// for its word (up to SWITCH_WAIT_MS), then reload.
const SWITCH_WAIT_MS = 1500;

function switchNote() {
  try {
    return JSON.parse(localStorage.getItem(SWITCH_KEY) || "null");
  } catch {
    return null;
  }
}

// The switch note this page was loaded after: a reload waits for a newer one (a second
// switch right after a first must not reload before its cookie is stored).
const noteAtLoad = switchNote()?.at ?? 0;

function reloadWhenSettled() {
  const started = Date.now();
  const check = () => {
    const note = switchNote();
    if ((note && note.at > noteAtLoad) || Date.now() - started > SWITCH_WAIT_MS) {
      window.location.reload();
    } else {
      setTimeout(check, 100);
    }
  };
  check();
}

// After a reload caused by another tab's workspace switch: say so, once.
function sayIfSwitchedElsewhere() {
  const note = switchNote();
  if (!note || note.tab === tabId() || Date.now() - note.at > SWITCH_NEWS_MS) return;
  if (sessionStorage.getItem(SWITCH_KEY) === String(note.at)) return;
  sessionStorage.setItem(SWITCH_KEY, String(note.at));
  refs.__toast?.info(`You switched to ${note.name} in another tab.`, {
    id: "workspace-switched",
    duration: 8000,
  });
}

// The store's model per Reflex state store, kept when the component unmounts.
const carried = new WeakMap();

export function LiveStore({
  feedState,
  liveState,
  chatState,
  presenceState,
  notificationState,
  reloadEvent,
  listenEvent,
  loadOlderEvent,
  refreshEvent,
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
    // Mounted again on the same store (React's development mode mounts every effect twice):
    // carry on from where the first mount was, or the frame it applied is lost to this one.
    const saved = carried.get(store);
    let model = saved ? saved.model : emptyModel();
    let written = saved ? saved.written : {};
    // The feed never comes in a hydrate (app/state/live_vars.py): whatever it holds at the
    // first mount is a frame of this page that came before the mount, still to apply.
    let lastFeed = saved ? saved.lastFeed : undefined;
    let typingTimer = null;
    const activeId = () => stateVar(store, chatState, "active_id") || 0;
    tabId();
    const view = createMessageView({ store, chatState, loadOlderEvent, getModel: () => model });
    const detachView = view.attach();
    const detachPicker = createMentionPicker({ store, chatState }).attach();
    const desktop = createDesktopNotify({ store, chatState });
    const detachDesktop = desktop.attach();

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
      // The unread total in the tab's title, as chat apps do.
      const title = model.totalUnread ? `(${model.totalUnread}) Chat` : "Chat";
      if (document.title !== title) document.title = title;
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
      let then = null;
      let reload = false;
      let refresh = false;
      const before = model;
      const where = view.before(items);
      for (const item of items) {
        const [next, needsList] = applyItem(model, item, Date.now() / 1000);
        // Signed out elsewhere, or another tab switched workspace: reloaded, the page
        // brings the browser's session cookie again, and lands where it now points (the
        // new workspace, or the sign-in page). Cut off as a slow consumer: a new listener
        // (and snapshot) picks up where it is.
        if (item.closed?.reason === "session_ended") reload = true;
        else if (item.closed?.reason === "slow_consumer") then = listenEvent;
        if (item.snapshot) sayIfSwitchedElsewhere();
        if (item.event) desktop.onEvent(item, model.me);
        // The open conversation was renamed, its people changed, or we left it: its
        // header is read again (or it closes, if it is no longer ours).
        if (item.event?.type === "chat:conversation" && item.event.data.conversationId === activeId())
          refresh = true;
        model = next;
        askForList ||= needsList;
      }
      if (model !== before) {
        write();
        if (model.typists !== before.typists) scheduleForget();
      }
      view.after(where, before, model, items);
      if (askForList) eventLoop.addEvents([ReflexEvent(reloadEvent, {})]);
      if (then) eventLoop.addEvents([ReflexEvent(then, {})]);
      if (refresh) eventLoop.addEvents([ReflexEvent(refreshEvent, {})]);
      if (reload) reloadWhenSettled();
    };

    const onFeed = () => {
      const feed = store.getSnapshot(feedState)?.["feed" + FIELD_MARKER];
      if (feed === lastFeed) return;
      lastFeed = feed;
      if (Array.isArray(feed) && feed.length) apply(feed);
    };
    const unsubscribe = store.subscribe(feedState, onFeed);
    // A frame that came while no mount listened is applied now.
    onFeed();
    return () => {
      unsubscribe();
      carried.set(store, { model, written, lastFeed });
      detachView();
      detachPicker();
      detachDesktop();
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
    listenEvent,
    loadOlderEvent,
    refreshEvent,
  ]);
  return null;
}
