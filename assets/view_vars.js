// Vars of a Reflex state that the page itself writes (ChatState's VIEW_VARS, app/state/chat.py),
// and reading any var of a state from the page's state store.
const FIELD_MARKER = "_rx_state_";

// The current value of `name` in state `stateName`.
export function stateVar(store, stateName, name) {
  return store.getSnapshot(stateName)?.[name + FIELD_MARKER];
}

// A writer of some of a state's vars, starting from `initial`: it keeps what it wrote and
// dispatches only what changed.
export function viewVars(store, stateName, initial) {
  let values = { ...initial };
  const write = (changes) => {
    const delta = {};
    for (const [name, value] of Object.entries(changes)) {
      if (values[name] !== value) delta[name + FIELD_MARKER] = value;
    }
    values = { ...values, ...changes };
    if (Object.keys(delta).length) store.dispatchers[stateName]?.(delta);
  };
  return { get: () => values, write };
}
