// Opt-in desktop notifications (the browser's Notification API), as Slack and Zulip offer:
// while this tab is hidden, a message from someone else, or a notification for the reader,
// shows one. The user menu's switch (data-desktop-notify-toggle) asks the browser for
// permission the first time; the choice is kept per browser (localStorage).
//
// It writes one view var of ChatState (VIEW_VARS in app/state/chat.py): desktop_notify,
// which the switch shows.
import { refs } from "$/utils/state";

import { viewVars } from "./view_vars.js";

const KEY = "chat:desktop-notify";
const TOGGLE = "[data-desktop-notify-toggle]";

function supported() {
  return typeof window !== "undefined" && "Notification" in window;
}

function chosen() {
  try {
    return localStorage.getItem(KEY) === "on";
  } catch {
    return false;
  }
}

export function createDesktopNotify({ store, chatState }) {
  const vars = viewVars(store, chatState, { desktop_notify: false });
  const write = (value) => vars.write({ desktop_notify: value });
  const enabled = () => supported() && chosen() && Notification.permission === "granted";

  const toggle = async () => {
    if (!supported()) return;
    if (vars.get().desktop_notify) {
      localStorage.setItem(KEY, "off");
      write(false);
      return;
    }
    const permission =
      Notification.permission === "default"
        ? await Notification.requestPermission()
        : Notification.permission;
    localStorage.setItem(KEY, permission === "granted" ? "on" : "off");
    write(permission === "granted");
    if (permission === "denied") {
      refs.__toast?.warning(
        "The browser blocks notifications for this site: allow them in its site settings.",
      );
    }
  };

  const show = (title, body, tag) => {
    if (!enabled() || !document.hidden) return;
    const shown = new Notification(title, { body, tag });
    shown.onclick = () => {
      window.focus();
      shown.close();
    };
  };

  // Called by the store for each live event of the feed it applies (`item`: the event,
  // and for a message the server's preview of it, app/state/tab_feed.py).
  const onEvent = (item, me) => {
    const event = item.event;
    const data = event.data || {};
    if (event.type === "chat:message") {
      const message = data.message || {};
      if (message.senderId === me || message.deleted) return;
      show(message.senderName, item.preview, `conversation-${data.conversationId}`);
    } else if (event.type === "notification:new") {
      show(data.title, data.body, `notification-${data.id}`);
    }
  };

  const onClick = (e) => {
    // The click goes on to the menu, which closes as after any choice.
    if (e.target?.closest?.(TOGGLE)) toggle();
  };

  const attach = () => {
    // Only a change is written: the var starts false.
    if (enabled()) write(true);
    document.addEventListener("click", onClick, true);
    return () => document.removeEventListener("click", onClick, true);
  };

  return { attach, onEvent };
}
