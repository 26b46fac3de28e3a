// "@" in the composer offers the open conversation's members, as Slack and Zulip do:
// typing narrows the list (username or name, from their start), Up and Down move, Enter
// or Tab picks, Escape closes; a click picks too. The pick becomes "@username ".
//
// It writes two view vars of ChatState (VIEW_VARS in app/state/chat.py): the matches the
// composer shows and which one is chosen; ChatState.active_people is where members come
// from. While it is open the composer carries data-mention-open, so Enter picks instead
// of sending (its Enter key, assets/message_view.js).
import { stateVar, viewVars } from "./view_vars.js";

const COMPOSER_ID = "composer";
const MAX_SHOWN = 8;
// "@" at the start or after a space or bracket, then the query up to the caret.
const QUERY = /(^|[\s(\[])@([\p{L}\p{N}_.-]{0,30})$/u;

export function createMentionPicker({ store, chatState }) {
  const { get: shown, write } = viewVars(store, chatState, { mention_matches: [], mention_index: 0 });
  let query = null; // {start, end} of "@query" in the composer's value

  const people = () => stateVar(store, chatState, "active_people") || [];

  const close = (box) => {
    query = null;
    if (box) delete box.dataset.mentionOpen;
    if (shown().mention_matches.length) write({ mention_matches: [], mention_index: 0 });
  };

  const update = (box) => {
    const before = box.value.slice(0, box.selectionStart ?? box.value.length);
    const found = QUERY.exec(before);
    if (!found) return close(box);
    const typed = found[2].toLowerCase();
    const matches = people()
      .filter(
        (p) =>
          p.username.toLowerCase().startsWith(typed) ||
          p.name
            .toLowerCase()
            .split(/\s+/)
            .some((word) => word.startsWith(typed)),
      )
      .slice(0, MAX_SHOWN);
    if (!matches.length) return close(box);
    query = { start: before.length - found[2].length - 1, end: before.length };
    box.dataset.mentionOpen = "1";
    write({ mention_matches: matches, mention_index: Math.min(shown().mention_index, matches.length - 1) });
  };

  const pick = (box, username) => {
    if (!query) return;
    const text = `@${username} `;
    box.value = box.value.slice(0, query.start) + text + box.value.slice(query.end);
    const caret = query.start + text.length;
    box.setSelectionRange(caret, caret);
    close(box);
    // As if typed: the draft, the counter and the typing notice see it.
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  };

  const onInput = (e) => {
    if (e.target?.id === COMPOSER_ID) update(e.target);
  };

  const onKeyDown = (e) => {
    const box = e.target;
    if (box?.id !== COMPOSER_ID || !query || !shown().mention_matches.length) return;
    const count = shown().mention_matches.length;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const step = e.key === "ArrowDown" ? 1 : count - 1;
      write({ mention_index: (shown().mention_index + step) % count });
    } else if ((e.key === "Enter" && !e.shiftKey) || e.key === "Tab") {
      e.preventDefault();
      e.stopImmediatePropagation();
      pick(box, shown().mention_matches[shown().mention_index].username);
    } else if (e.key === "Escape") {
      e.preventDefault();
      close(box);
    }
  };

  // mousedown, not click: the composer keeps its focus and caret.
  const onMouseDown = (e) => {
    const option = e.target?.closest?.("[data-mention-option]");
    const box = document.getElementById(COMPOSER_ID);
    if (!option || !box) return;
    e.preventDefault();
    pick(box, option.dataset.mentionOption);
  };

  const onBlur = (e) => {
    if (e.target?.id === COMPOSER_ID) close(e.target);
  };

  const attach = () => {
    document.addEventListener("input", onInput, true);
    document.addEventListener("keydown", onKeyDown, true);
    document.addEventListener("mousedown", onMouseDown, true);
    document.addEventListener("blur", onBlur, true);
    return () => {
      document.removeEventListener("input", onInput, true);
      document.removeEventListener("keydown", onKeyDown, true);
      document.removeEventListener("mousedown", onMouseDown, true);
      document.removeEventListener("blur", onBlur, true);
    };
  };

  return { attach };
}
