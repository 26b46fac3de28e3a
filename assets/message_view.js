// How the open conversation's pane behaves as a reader expects, beside the page's store
// (live_store.js): it follows new messages while the reader is at the end and counts them
// otherwise ("jump to newest"), keeps the view still when older messages are put above,
// loads older ones when the reader scrolls to the top, keeps a draft per conversation
// across reloads, and counts the composer's characters.
//
// It writes a few view vars of ChatState (VIEW_VARS in app/state/chat.py), which the
// server never sets, exactly as the store writes the live vars.
import { eventLoop } from "$/utils/context-registry";
import { ReflexEvent } from "$/utils/state";
import { stateVar, viewVars } from "./view_vars.js";

// A list scrolled to within this of its end follows new messages.
const FOLLOW_PX = 80;
// Scrolled to within this of its top, the list asks for the page before.
const LOAD_OLDER_PX = 120;
// An older page that never comes (refused, say) does not block asking again.
const OLDER_TIMEOUT_MS = 10_000;
const LIST_ID = "message-list";
const COMPOSER_ID = "composer";
const JUMP_ID = "jump-to-newest";

function list() {
  return document.getElementById(LIST_ID);
}

// The first message whose top is in view, and how far below the list's top it is.
function firstVisible(el) {
  if (!el) return null;
  const top = el.getBoundingClientRect().top;
  for (const row of el.querySelectorAll("[data-testid=message]")) {
    const offset = row.getBoundingClientRect().top - top;
    if (offset >= 0) return { id: row.dataset.id, offset };
  }
  return null;
}

function atEnd(el) {
  return !el || el.scrollHeight - el.scrollTop - el.clientHeight <= FOLLOW_PX;
}

// Runs `then` once React has rendered a change of the list's height (or after 30 frames:
// a change that moved nothing).
function afterRender(height, then) {
  let frames = 0;
  const step = () => {
    const el = list();
    if (el && (el.scrollHeight !== height || frames >= 30)) then(el);
    else if (frames++ < 30) requestAnimationFrame(step);
    else if (el) then(el);
  };
  requestAnimationFrame(step);
}

export function createMessageView({ store, chatState, loadOlderEvent, getModel }) {
  const vars = viewVars(store, chatState, {
    unseen_below: 0,
    scrolled_up: false,
    loading_older: false,
    composer_length: 0,
  });
  const { write } = vars;
  let olderTimer = null;
  let draftOf = 0; // the conversation whose draft the composer shows
  // Following: the reader is at the newest message, so the list stays pinned to its end
  // while its content grows (new messages, and rows still laying out after a render).
  let following = true;
  let watched = null;
  let lastTop = 0;
  const pin = (el) => {
    el.scrollTop = el.scrollHeight;
    lastTop = el.scrollTop;
  };
  // Older messages went above: the message that was at the top of the view stays where
  // it was while the rows above it lay out (for a moment, or until the reader scrolls up).
  let anchor = null;
  const ANCHOR_MS = 1500;
  // A message to show (a search result, a link): paged back to, at most FOCUS_PAGES.
  let focus = null;
  const FOCUS_PAGES = 20;
  const keepAnchor = (el) => {
    if (!anchor || performance.now() > anchor.until) {
      anchor = null;
      return;
    }
    const row = el.querySelector(`[data-testid=message][data-id="${anchor.id}"]`);
    if (!row) return;
    const shift = row.getBoundingClientRect().top - el.getBoundingClientRect().top - anchor.offset;
    if (Math.abs(shift) >= 1) el.scrollTop += shift;
    lastTop = el.scrollTop;
  };
  const resized = new ResizeObserver(() => {
    const el = list();
    if (!el) return;
    if (following) pin(el);
    else keepAnchor(el);
  });
  // The list is rendered anew when a conversation opens: watch whichever content it has.
  const watch = () => {
    const content = list()?.firstElementChild || null;
    if (content === watched) return;
    if (watched) resized.unobserve(watched);
    watched = content;
    if (content) resized.observe(content);
  };
  const scrollToEnd = () => {
    following = true;
    afterRender(list()?.scrollHeight ?? -1, (el) => {
      watch();
      pin(el);
    });
  };

  const activeId = () => stateVar(store, chatState, "active_id") || 0;
  const draftKey = (conversationId) => `chat:draft:${getModel().me}:${conversationId}`;

  const composer = () => document.getElementById(COMPOSER_ID);

  const showDraft = (conversationId) => {
    const box = composer();
    if (!box || !getModel().me) return;
    if (draftOf !== conversationId) {
      box.value = localStorage.getItem(draftKey(conversationId)) || "";
      draftOf = conversationId;
      write({ composer_length: box.value.length });
    }
  };

  const askForOlder = () => {
    const model = getModel();
    if (vars.get().loading_older || !model.hasOlder || !model.messages.length) return;
    if (model.messagesOf !== activeId()) return;
    write({ loading_older: true });
    clearTimeout(olderTimer);
    olderTimer = setTimeout(() => write({ loading_older: false }), OLDER_TIMEOUT_MS);
    eventLoop.addEvents([ReflexEvent(loadOlderEvent, { before: model.messages[0].id })]);
  };

  // The history of a conversation comes a moment before the tab's active_id says it is
  // open: `then` once it does (or never, after about a second: the reader moved on).
  const whenActive = (conversationId, then, frames = 0) => {
    if (activeId() === conversationId) then();
    else if (frames < 60) requestAnimationFrame(() => whenActive(conversationId, then, frames + 1));
  };

  // Scrolls to the focused message once it is rendered and marks it for a moment; pages
  // back while it is older than what the list holds.
  const showFocus = (model) => {
    if (!focus || model.messagesOf !== focus.conversationId) return;
    if (model.messages.some((m) => m.id === focus.id)) {
      const id = focus.id;
      focus = null;
      following = false;
      // Once React has rendered its row (a few frames after the model has it).
      const reveal = (frames) => {
        const el = list();
        const row = el?.querySelector(`[data-testid=message][data-id="${id}"]`);
        if (!row) {
          if (frames < 60) requestAnimationFrame(() => reveal(frames + 1));
          return;
        }
        watch();
        anchor = null; // the older page's anchor would scroll it away again
        following = false;
        row.scrollIntoView({ block: "center" });
        lastTop = el.scrollTop;
        row.dataset.focused = "true";
        setTimeout(() => delete row.dataset.focused, 3000);
      };
      requestAnimationFrame(() => reveal(0));
    } else if (model.hasOlder && focus.pages++ < FOCUS_PAGES) {
      whenActive(focus.conversationId, askForOlder);
    } else {
      focus = null; // deleted for good, or further back than we page
    }
  };

  // Before the store writes a change: where the reader is.
  const before = (items) => {
    const el = list();
    // Measured only for an older page: it forces a layout of every row.
    const first = items.some((i) => i.history?.older) ? firstVisible(el) : null;
    return { atEnd: atEnd(el), height: el ? el.scrollHeight : -1, first };
  };

  // After the store wrote `items`, which took the model from `old` to `now`.
  const after = (where, old, now, items) => {
    for (const item of items) {
      if (item.history && !item.history.older && item.history.conversationId === now.messagesOf) {
        // Opened (a click, a reload): at the newest. The same one again (a resync): only
        // if the reader was there.
        if (item.history.focus) {
          focus = { id: item.history.focus, conversationId: now.messagesOf, pages: 0 };
        } else if (old.messagesOf !== now.messagesOf || draftOf !== now.messagesOf || where.atEnd) {
          scrollToEnd();
          write({ unseen_below: 0, scrolled_up: false });
        }
        showDraft(now.messagesOf);
      } else if (item.history?.older && item.history.conversationId === now.messagesOf) {
        clearTimeout(olderTimer);
        write({ loading_older: false });
        // The older messages go above: the first message in view stays where it is.
        if (where.first) anchor = { ...where.first, until: performance.now() + ANCHOR_MS };
        afterRender(where.height, (el) => {
          watch();
          keepAnchor(el);
        });
      }
    }
    if (focus) showFocus(now);
    if (now.messages !== old.messages && now.messagesOf === old.messagesOf) {
      const added = now.messages.filter((m) => m.id > (old.messages.at(-1)?.id ?? 0));
      if (!added.length) return;
      if (added.some((m) => m.mine) || following || where.atEnd) {
        scrollToEnd();
      } else {
        write({ unseen_below: vars.get().unseen_below + added.length });
      }
    }
  };

  const onScroll = (e) => {
    const el = e.target;
    if (!el || el.id !== LIST_ID) return;
    watch();
    // Only the reader scrolling up stops the following: content that grew under a pinned
    // list also fires a scroll event, with the end further away but the top unchanged.
    const movedUp = el.scrollTop < lastTop - 1;
    lastTop = el.scrollTop;
    if (atEnd(el)) following = true;
    else if (movedUp) following = false;
    if (movedUp) anchor = null;
    const up = !following;
    write(up ? { scrolled_up: true } : { scrolled_up: false, unseen_below: 0 });
    if (el.scrollTop < LOAD_OLDER_PX && el.scrollHeight > el.clientHeight) askForOlder();
  };

  const onClick = (e) => {
    if (!e.target?.closest?.(`#${JUMP_ID}`)) return;
    const el = list();
    following = true;
    if (el) pin(el);
    write({ unseen_below: 0, scrolled_up: false });
  };

  const onInput = (e) => {
    const box = e.target;
    if (!box || box.id !== COMPOSER_ID) return;
    write({ composer_length: box.value.length });
    const conversationId = activeId();
    if (!conversationId || !getModel().me) return;
    draftOf = conversationId;
    if (box.value) localStorage.setItem(draftKey(conversationId), box.value);
    else localStorage.removeItem(draftKey(conversationId));
  };

  // Enter sends, Shift+Enter makes a new line (and an IME's Enter composes); not while the
  // send button is off (a text over the limit: the counter says why), nor while the "@"
  // list is open (Enter picks a person there, assets/mention_picker.js).
  const onKeyDown = (e) => {
    const box = e.target;
    if (box?.id !== COMPOSER_ID || e.key !== "Enter" || e.shiftKey || e.isComposing) return;
    if (box.dataset.mentionOpen) return;
    e.preventDefault();
    const send = box.form?.querySelector("[data-testid=send]");
    if (box.form && !send?.disabled) box.form.requestSubmit();
  };

  const onSubmit = (e) => {
    if (!e.target?.querySelector?.(`#${COMPOSER_ID}`)) return;
    const conversationId = activeId();
    if (conversationId && getModel().me) localStorage.removeItem(draftKey(conversationId));
    write({ composer_length: 0 });
  };

  const attach = () => {
    document.addEventListener("scroll", onScroll, true);
    document.addEventListener("click", onClick, true);
    document.addEventListener("input", onInput, true);
    document.addEventListener("submit", onSubmit, true);
    document.addEventListener("keydown", onKeyDown, true);
    return () => {
      document.removeEventListener("keydown", onKeyDown, true);
      document.removeEventListener("scroll", onScroll, true);
      document.removeEventListener("click", onClick, true);
      document.removeEventListener("input", onInput, true);
      document.removeEventListener("submit", onSubmit, true);
      clearTimeout(olderTimer);
      resized.disconnect();
    };
  };

  return { attach, before, after };
}
