// Opt-in desktop notifications (the browser's Notification API), as Slack and Zulip offer:
// while this tab is hidden, a message from someone else, or a notification for the reader,
// shows one. The user menu's switch (data-desktop-notify-toggle) asks the browser for
// permission the first time; the choice is kept per browser (localStorage).
//
// It writes one view var of ChatState (VIEW_VARS in app/state/chat.py): desktop_notify,
// which the switch shows.
import { refs } from "$/utils/state";

const FIELD_MARKER = "_rx_state_";
const KEY = "chat:desktop-notify";
const TOGGLE = "[data-desktop-notify-toggle]";
const BODY_CHARS = 140;

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

function shorter(text) {
  const flat = String(text || "").replace(/\s+/g, " ").trim();
  return flat.length <= BODY_CHARS ? flat : `${flat.slice(0, BODY_CHARS - 1)}…`;
}

export function createDesktopNotify({ store, chatState }) {
  let on = false;
  const write = (value) => {
    on = value;
    store.dispatchers[chatState]?.({ ["desktop_notify" + FIELD_MARKER]: value });
  };
  const enabled = () => supported() && chosen() && Notification.permission === "granted";

  const toggle = async () => {
    if (!supported()) return;
    if (on) {
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
    const shown = new Notification(title, { body: shorter(body), tag });
    shown.onclick = () => {
      window.focus();
      shown.close();
    };
  };

  // Called by the store for each live event the tab applies.
  const onEvent = (event, me) => {
    const data = event.data || {};
    if (event.type === "chat:message") {
      const message = data.message || {};
      if (message.senderId === me || message.deleted) return;
      show(message.senderName, message.content, `conversation-${data.conversationId}`);
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
