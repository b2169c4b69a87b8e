// The chat page. Each part lives in its own module; this one starts them,
// in the order they depend on each other.

import { nameIn, msgIn, restoreName, startForm } from './form.js';
import { startStatus } from './status.js';
import { startPeople, renderPresence, renderTyping } from './people.js';
import { startLog } from './log.js';
import { startGate, loadSession } from './gate.js';
import { startOutbox, sendFromForm } from './outbox.js';
import { startConnection, nameChanged } from './connection.js';
import { startTabs } from './leader.js';

// The name saved in this browser goes into the form first: the first
// stream carries it, so the person is on the list from the start.
restoreName();
startForm({
  // A new name shows in the list and the typing line at once, and the
  // stream takes it once it settles.
  onName: (settled) => { renderPresence(); renderTyping(); nameChanged(settled); },
  onSubmit: sendFromForm,
});

// What the page shows: the connection's state, who is here, the messages.
startStatus();
startPeople();
startLog();

// A private room's gate, and the session that says whether it is needed.
startGate();
loadSession();

// Messages written in any tab, sent exactly once.
startOutbox();

// The stream: read by this tab if it leads (or is alone), relayed by the
// leader otherwise. A tab that leads also sends what other tabs left in
// the outbox.
startConnection();
startTabs();

// Focus the form on desktops; on touch screens that would pop up the keyboard.
if (window.matchMedia && matchMedia('(pointer: fine)').matches) {
  if (nameIn.value === '') nameIn.focus(); else msgIn.focus();
}
