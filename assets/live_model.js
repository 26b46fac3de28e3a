// The chat page's live data, and how each feed item changes it. Pure functions with no
// dependencies: the page's store (live_store.js) holds one model per tab and writes the
// parts that changed into Reflex's state; tests/test_live_model.py runs these same
// functions against what the server sends.
//
// The rows have the shape of app/state/items.py (snake_case, as Reflex sends dataclasses);
// a snapshot and history pages come from app/state/page_data.py; events are exactly what an
// /api/sse consumer receives ({id, type, data}). Applying an event twice changes nothing.

const PRESENCE_ORDER = { online: 0, away: 1, offline: 2 };
// Live messages kept per conversation, to merge with a history page that was read before
// they arrived (a click and a message can cross).
export const RECENT_KEPT = 50;

export function emptyModel() {
  return {
    connected: false, // a listener serves the tab: snapshot applied, events flowing
    me: 0,
    conversations: [],
    totalUnread: 0,
    messages: [],
    messagesOf: 0,
    hasOlder: false,
    // conversation id (string) -> user id (string) -> {name, until}: who is typing there,
    // and when to forget them (epoch s). By id: two people may share a name.
    typists: {},
    people: [],
    notifications: [],
    notificationsUnread: 0,
    notificationsShown: 20,
    typingForgetSeconds: 10,
    recent: {}, // conversation id -> its last live messages, oldest first
    // conversation id -> its last edits and deletes, oldest first, as [{id, patch}]: applied
    // to every copy of the message the tab holds, and to a history page read before them.
    changes: {},
  };
}

export function messageItem(message, me) {
  return {
    id: message.id,
    conversation_id: message.conversationId,
    content: message.content,
    sender_id: message.senderId,
    sender_name: message.senderName,
    created_at: message.createdAt,
    mine: message.senderId === me,
    edited: message.editedAt != null,
    deleted: message.deleted === true,
  };
}

function notificationItem(data, read) {
  return {
    id: data.id,
    type: data.type,
    title: data.title,
    body: data.body,
    link: data.link || "",
    created_at: data.createdAt,
    read,
  };
}

function personItem(data) {
  return {
    user_id: data.userId,
    name: data.userName,
    status: data.status,
    last_seen: data.lastSeen || "",
  };
}

function byPresence(a, b) {
  const order = (PRESENCE_ORDER[a.status] ?? 3) - (PRESENCE_ORDER[b.status] ?? 3);
  if (order) return order;
  const x = a.name.toLowerCase();
  const y = b.name.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

// `messages` with each change to one of them applied, in order.
function withChanges(messages, changes) {
  if (!changes || !changes.length) return messages;
  return messages.map((m) =>
    changes.reduce((item, c) => (c.id === item.id ? { ...item, ...c.patch } : item), m),
  );
}

function mergeById(...lists) {
  const byId = new Map();
  for (const list of lists) for (const m of list) byId.set(m.id, m);
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

export function applySnapshot(model, s) {
  return {
    ...model,
    connected: true,
    me: s.me,
    conversations: s.conversations,
    totalUnread: s.totalUnread,
    people: s.people,
    notifications: s.notifications,
    notificationsUnread: s.notificationsUnread,
    notificationsShown: s.notificationsShown,
    typingForgetSeconds: s.typingForgetSeconds,
    typists: {},
  };
}

export function applyHistory(model, h) {
  const id = h.conversationId;
  if (h.older) {
    if (model.messagesOf !== id) return model; // the user moved on meanwhile
    const page = withChanges(h.messages, model.changes[id]);
    return { ...model, messages: mergeById(page, model.messages), hasOlder: h.hasOlder };
  }
  const newest = h.messages.length ? h.messages[h.messages.length - 1].id : 0;
  const arrived = (model.recent[id] || []).filter((m) => m.id > newest);
  return {
    ...model,
    messages: mergeById(withChanges(h.messages, model.changes[id]), arrived),
    messagesOf: id,
    hasOlder: h.hasOlder,
  };
}

// The tab's listener stopped (`reason` is the manager's close reason).
export function applyClosed(model) {
  return model.connected ? { ...model, connected: false } : model;
}

// A conversation this tab started: listed at once, ahead of the others.
export function applyConversation(model, item) {
  if (model.conversations.some((c) => c.id === item.id)) return model;
  return { ...model, conversations: [item, ...model.conversations] };
}

function withoutTypist(typists, conversationId, userId) {
  const key = String(conversationId);
  const who = String(userId);
  if (!typists[key] || !(who in typists[key])) return typists;
  const here = { ...typists[key] };
  delete here[who];
  return { ...typists, [key]: here };
}

// Returns [model, needsList]: needsList when the event names a conversation the tab
// does not list (someone started it with us): the store asks for a fresh snapshot.
export function applyEvent(model, event, extra, now) {
  const data = event.data;
  switch (event.type) {
    case "chat:message":
      return applyMessage(model, data, extra.preview, now);
    case "chat:message-updated": {
      const { content, edited, deleted } = messageItem(data.message, model.me);
      const patch = { content, edited, deleted };
      return applyChange(model, data.conversationId, data.message.id, patch, extra.preview);
    }
    case "chat:message-deleted": {
      const patch = { content: "", deleted: true };
      return applyChange(model, data.conversationId, data.messageId, patch, extra.preview);
    }
    case "chat:conversation":
      // Started, joined, renamed, its people changed, or left: the rows come with a fresh
      // snapshot (the server's own rows: names, previews and order as a reload would show
      // them). One we are no longer in goes at once.
      if (data.action === "removed") {
        const id = data.conversationId;
        return [
          {
            ...model,
            conversations: model.conversations.filter((c) => c.id !== id),
            typists: Object.fromEntries(
              Object.entries(model.typists).filter(([key]) => key !== String(id)),
            ),
          },
          true,
        ];
      }
      return [model, true];
    case "chat:unread-count":
      return [
        {
          ...model,
          totalUnread: data.total,
          conversations: model.conversations.map((c) =>
            c.id === data.conversationId ? { ...c, unread_count: data.count } : c,
          ),
        },
        false,
      ];
    case "chat:typing": {
      const key = String(data.conversationId);
      let typists = model.typists;
      if (data.isTyping) {
        const typist = { name: data.userName, until: now + model.typingForgetSeconds };
        typists = { ...typists, [key]: { ...(typists[key] || {}), [String(data.userId)]: typist } };
      } else {
        typists = withoutTypist(typists, data.conversationId, data.userId);
      }
      return [{ ...model, typists }, false];
    }
    case "notification:new": {
      let notifications = model.notifications;
      if (!notifications.some((n) => n.id === data.id)) {
        notifications = [notificationItem(data, false), ...notifications].slice(
          0,
          model.notificationsShown,
        );
      }
      return [{ ...model, notifications, notificationsUnread: data.unreadCount }, false];
    }
    case "notification:read":
      return [
        {
          ...model,
          notifications: model.notifications.map((n) =>
            data.all || n.id === data.id ? (n.read ? n : { ...n, read: true }) : n,
          ),
          notificationsUnread: data.unreadCount,
        },
        false,
      ];
    case "presence:update": {
      const updated = personItem(data);
      const people = [...model.people.filter((p) => p.user_id !== updated.user_id), updated];
      return [{ ...model, people: people.sort(byPresence) }, false];
    }
    default:
      return [model, false];
  }
}

function applyMessage(model, data, preview, now) {
  const item = messageItem(data.message, model.me);
  const id = data.conversationId;
  const recent = model.recent[id] || [];
  if (recent.some((m) => m.id === item.id)) return [model, false]; // already applied
  const next = {
    ...model,
    recent: { ...model.recent, [id]: [...recent, item].slice(-RECENT_KEPT) },
    // Whoever sent a message has stopped typing.
    typists: withoutTypist(model.typists, id, item.sender_id),
  };
  const known = model.conversations.find((c) => c.id === id);
  let needsList = false;
  if (!known) {
    needsList = true;
  } else if (known.last_message_id < item.id) {
    const moved = {
      ...known,
      preview_sender: item.mine ? "You" : item.sender_name,
      preview_text: preview,
      last_message_at: item.created_at,
      last_message_id: item.id,
    };
    next.conversations = [moved, ...model.conversations.filter((c) => c.id !== id)];
  }
  if (model.messagesOf === id && !model.messages.some((m) => m.id === item.id)) {
    next.messages = mergeById(model.messages, [item]);
  }
  return [next, needsList];
}

// An edit or a delete changes the message in place, and the conversation's preview when
// it is the last message (`preview` is the server's, as for a new message).
function applyChange(model, conversationId, messageId, patch, preview) {
  const change = { id: messageId, patch };
  const changes = [...(model.changes[conversationId] || []), change].slice(-RECENT_KEPT);
  const recent = model.recent[conversationId] || [];
  const next = {
    ...model,
    changes: { ...model.changes, [conversationId]: changes },
    recent: { ...model.recent, [conversationId]: withChanges(recent, [change]) },
    conversations: model.conversations.map((c) =>
      c.id === conversationId && c.last_message_id === messageId
        ? { ...c, preview_text: preview }
        : c,
    ),
  };
  if (model.messagesOf === conversationId) next.messages = withChanges(model.messages, [change]);
  return [next, false];
}

// One item of the tab's feed (app/state/tab_feed.py), as the page's store applies it.
// Returns [model, needsList], as applyEvent does.
export function applyItem(model, item, now) {
  if (item.snapshot) return [applySnapshot(model, item.snapshot), false];
  if (item.history) return [applyHistory(model, item.history), false];
  if (item.conversation) return [applyConversation(model, item.conversation), false];
  if (item.closed) return [applyClosed(model), false];
  if (item.event) return applyEvent(model, item.event, item, now);
  return [model, false];
}

// Typists not heard from for typingForgetSeconds are forgotten, whatever the server says.
export function forgetSilentTypists(model, now) {
  let changed = false;
  const typists = {};
  for (const [key, here] of Object.entries(model.typists)) {
    const kept = {};
    for (const [who, typist] of Object.entries(here)) {
      if (typist.until > now) kept[who] = typist;
      else changed = true;
    }
    typists[key] = kept;
  }
  return changed ? { ...model, typists } : model;
}

export function nextTypistExpiry(model) {
  let next = Infinity;
  for (const here of Object.values(model.typists)) {
    for (const typist of Object.values(here)) next = Math.min(next, typist.until);
  }
  return next;
}

// The values of the Reflex vars the store writes, by state: [state, var, value].
export function reflexVars(model) {
  return {
    live: { connected: model.connected },
    chat: {
      conversations: model.conversations,
      total_unread: model.totalUnread,
      messages: model.messages,
      messages_of: model.messagesOf,
      has_older: model.hasOlder,
      typists: model.typists,
    },
    presence: {
      people: model.people,
      online_count: model.people.filter((p) => p.status === "online").length,
    },
    notifications: {
      items: model.notifications,
      unread_count: model.notificationsUnread,
      badge: model.notificationsUnread > 99 ? "99+" : String(model.notificationsUnread),
    },
  };
}
