// The chat page. Each part lives in its own module; this one starts them,
// in the order they depend on each other.

import { nameIn, msgIn, restoreName, startForm, onRefused } from './form.js';
import { startStatus } from './status.js';
import { startPeople, renderPresence, renderTyping } from './people.js';
import { startLog, refill } from './log.js';
import { startGate, loadSession } from './gate.js';
import { startOutbox, sendFromForm, nameChosen, nameHeld } from './outbox.js';
import { startConnection, nameChanged, onNamed, NAME_SETTLE } from './connection.js';
import { startMine } from './mine.js';
import { startNotify } from './notify.js';
import { startTabs } from './leader.js';

// The name saved in this browser goes into the form first: the first
// stream carries it, so the person is on the list from the start.
restoreName();
let settleTimer = 0;
startForm({
  // A new name shows in the list and the typing line at once; once it
  // settles, the stream takes it, the mentions of the person are marked
  // anew, and messages waiting for a name are sent under it.
  onName: (settled) => {
    renderPresence(); renderTyping(); nameChanged(settled);
    clearTimeout(settleTimer);
    const settle = () => { refill(); nameChosen(); };
    if (settled) settle(); else settleTimer = setTimeout(settle, NAME_SETTLE);
  },
  onSubmit: sendFromForm,
});
// A name the server refused (here or in another tab): the stream goes on
// without it. A name the stream was opened with is this browser's: what
// waited for it goes.
onRefused(() => nameChanged(true));
onNamed(nameHeld);

// What the page shows: the connection's state, who is here, the messages
// with their Edit and Delete controls, and the bell for notifications.
startStatus();
startPeople();
startLog();
startMine();
startNotify();

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
