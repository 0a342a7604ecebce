// The room page: draws what room-client.js receives, and the session's live charts.
// With ?report=... in the URL the page also runs room-selftest.js (the browser test's
// script); otherwise it joins ?room= (default "lobby") as ?name= (default a guest name).
import { Room } from "/static/room-client.js";
import { Sparkline } from "/static/charts.js";

const params = new URLSearchParams(location.search);
const roomName = params.get("room") || "lobby";
const certificateHash = params.get("hash") ?? undefined; // as printed by the CLI; else fetched
const $ = (id) => document.getElementById(id);

export const state = {
  name: params.get("name") || `guest-${1000 + Math.floor(Math.random() * 9000)}`,
  room: null, // the current Room; a new one after start() is called again
  people: new Map(), // member id -> {id, name, pid}
  cursors: new Map(), // member id -> element
  view: null, // the last ServerView
  pingRtt: null,
};
// The current Room's events, re-dispatched after the page has drawn them, so that a
// listener (the self-test) sees the page's state already updated and survives a rejoin.
export const events = new EventTarget();

const chartsBox = $("charts");
export const charts = {
  rtt: new Sparkline(chartsBox, { title: "round-trip time", unit: "ms", color: "#7c3aed" }),
  datagramsOut: new Sparkline(chartsBox, { title: "datagrams/s sent", color: "#2563eb" }),
  datagramsIn: new Sparkline(chartsBox, { title: "datagrams/s received", color: "#0891b2" }),
  streams: new Sparkline(chartsBox, { title: "open streams", color: "#059669", note: "server's count" }),
  bytesOut: new Sparkline(chartsBox, { title: "kB/s out", color: "#d97706" }),
  bytesIn: new Sparkline(chartsBox, { title: "kB/s in", color: "#dc2626" }),
};

function hue(text) {
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}
const colorOf = (name) => `hsl(${hue(name)} 70% 45%)`;

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `pill ${kind}`;
}

function log(text, { who = null, system = false } = {}) {
  const item = document.createElement("li");
  if (system) item.className = "system";
  if (who) {
    const name = document.createElement("b");
    name.textContent = `${who}: `;
    name.style.color = colorOf(who);
    item.append(name);
  }
  item.append(text);
  $("log").append(item);
  $("log").scrollTop = $("log").scrollHeight;
}

function drawPeople() {
  const list = $("people");
  list.replaceChildren();
  const you = state.room?.you;
  const people = [...state.people.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const person of people) {
    const item = document.createElement("li");
    item.dataset.name = person.name;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = colorOf(person.name);
    const name = document.createElement("span");
    name.textContent = person.id === you?.id ? `${person.name} (you)` : person.name;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = `worker ${person.pid}`;
    item.append(dot, name, badge);
    list.append(item);
  }
}

function drawCursor({ id, x, y }) {
  const person = state.people.get(id);
  if (!person) return; // not (or no longer) in the room
  let element = state.cursors.get(id);
  if (!element) {
    element = document.createElement("div");
    element.className = "cursor";
    element.innerHTML = '<svg width="18" height="22" viewBox="0 0 18 22"><path d="M1 1 L1 18 L6 13.5 L9.5 21 L12.5 19.7 L9 12.3 L16 12.3 Z" stroke="white" stroke-width="1.4"/></svg><span></span>';
    element.querySelector("path").setAttribute("fill", colorOf(person.name));
    element.querySelector("span").textContent = person.name;
    element.querySelector("span").style.background = colorOf(person.name);
    $("stage").append(element);
    state.cursors.set(id, element);
  }
  element.style.left = `${(x * 100).toFixed(2)}%`;
  element.style.top = `${(y * 100).toFixed(2)}%`;
}

function forget(id) {
  state.people.delete(id);
  state.cursors.get(id)?.remove();
  state.cursors.delete(id);
}

function drawView(view) {
  const rows = [
    ["worker pid", view.pid, "session", view.session_id, "uptime", `${view.uptime.toFixed(0)} s`],
    ["streams open", view.active_streams, "streams created", view.streams_created, "datagrams dropped", view.datagrams_dropped],
    ["bytes sent (streams + datagrams)", view.bytes_sent + view.datagram_bytes_sent,
      "bytes received", view.bytes_received + view.datagram_bytes_received,
      "datagrams sent / received", `${view.datagrams_sent} / ${view.datagrams_received}`],
  ];
  const body = $("server-view").tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const cell of row) tr.insertCell().textContent = String(cell);
  }
}

const handlers = {
  welcome({ you, members }) {
    state.people = new Map(members.map((person) => [person.id, person]));
    state.people.set(you.id, you);
    $("me").textContent = you.name;
    setStatus(`connected · worker ${you.pid}`, "ok");
    log(`you joined room ${roomName} (worker ${you.pid})`, { system: true });
    drawPeople();
  },
  presence({ kind, who }) {
    if (who.id === state.room.you?.id) return;
    if (kind === "join") {
      state.people.set(who.id, who);
      log(`${who.name} joined (worker ${who.pid})`, { system: true });
    } else if (state.people.has(who.id)) {
      forget(who.id);
      log(`${who.name} left`, { system: true });
    }
    drawPeople();
  },
  chat({ name, text }) {
    log(text, { who: name });
  },
  cursor(cursor) {
    drawCursor(cursor);
  },
  view(view) {
    state.view = view;
    drawView(view);
  },
  pong({ rtt }) {
    state.pingRtt = rtt;
  },
  closed(detail) {
    const why = detail.error ?? (detail.reason || `code ${detail.closeCode ?? 0}`);
    setStatus(`closed: ${why}`, "bad");
    for (const id of [...state.people.keys()]) forget(id);
    drawPeople();
  },
};

// Joins the room (again, if it was joined): resolves with you ({id, name, pid}).
export async function start() {
  if (state.room && !state.room.closed) await state.room.leave();
  for (const id of [...state.people.keys()]) forget(id);
  const room = new Room(roomName, state.name, { certificateHash });
  state.room = room;
  for (const [type, handle] of Object.entries(handlers)) {
    room.addEventListener(type, (event) => {
      if (room !== state.room) return; // a room left for a new one
      handle(event.detail);
      events.dispatchEvent(new CustomEvent(type, { detail: event.detail }));
    });
  }
  setStatus("connecting…");
  try {
    return await room.join();
  } catch (error) {
    setStatus(error.message, "bad");
    throw error;
  }
}

export async function say(text) {
  await state.room.say(text);
  log(text, { who: state.name });
}

// What the server counted as payload of this session's streams and datagrams, either way.
function serverBytes(direction) {
  const view = state.view;
  return view ? view[`bytes_${direction}`] + view[`datagram_bytes_${direction}`] : 0;
}

// Once a second: the browser's figures where it has WebTransport.getStats(), else the ping
// on the chat stream and the server's byte counts (Chromium 156 has no getStats() and
// Firefox 153 ESR's throws "not implemented"); datagram rates as the page counts them.
let previous = null;
async function tick() {
  const room = state.room;
  if (!room?.you || room.closed) return;
  room.ping().catch(() => {});
  const stats = await room.browserStats();
  const now = {
    at: performance.now(),
    sent: room.datagramsSent,
    received: room.datagramsReceived,
    bytesOut: stats?.bytesSent ?? serverBytes("received"),
    bytesIn: stats?.bytesReceived ?? serverBytes("sent"),
  };
  const rtt = stats?.smoothedRtt ?? state.pingRtt;
  $("sources").textContent = stats?.smoothedRtt !== undefined
    ? "(RTT and bytes: the browser's getStats(); datagrams: counted by the page)"
    : "(RTT: a ping on the chat stream; bytes: the server's count of stream and datagram payload; datagrams: counted by the page)";
  if (previous && previous.room === room) {
    const seconds = Math.max((now.at - previous.at) / 1000, 0.001);
    charts.rtt.push(rtt ?? 0);
    charts.datagramsOut.push((now.sent - previous.sent) / seconds);
    charts.datagramsIn.push((now.received - previous.received) / seconds);
    charts.streams.push(state.view?.active_streams ?? 0);
    charts.bytesOut.push((now.bytesOut - previous.bytesOut) / seconds / 1000);
    charts.bytesIn.push((now.bytesIn - previous.bytesIn) / seconds / 1000);
  }
  previous = { ...now, room };
}
setInterval(() => tick().catch((error) => console.warn("charts:", error)), 1000);

// The local cursor, at most 30 datagrams a second.
let lastMove = 0;
$("stage").addEventListener("pointermove", (event) => {
  const now = performance.now();
  if (now - lastMove < 33 || !state.room?.you) return;
  lastMove = now;
  const box = $("stage").getBoundingClientRect();
  state.room.move((event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height).catch(() => {});
});
$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text) say(text).catch((error) => log(`not sent: ${error.message}`, { system: true }));
  $("text").value = "";
});
$("leave").addEventListener("click", () => state.room?.leave());
addEventListener("pagehide", () => state.room?.leave());

$("room-name").textContent = roomName;
$("me").textContent = state.name;
$("invite").href = `/?room=${encodeURIComponent(roomName)}`;

if (params.has("report")) {
  import("/static/room-selftest.js").then((selftest) => selftest.run());
} else {
  start().catch((error) => console.error(error));
}
