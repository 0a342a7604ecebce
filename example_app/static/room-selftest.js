// The browser test's script for the room page (tests/browser/test_room_page.py), loaded
// only when the URL has ?report=: it plays a visitor (a moving cursor, a greeting, a
// welcome for each newcomer), checks that it sees every other visitor's chat, cursor and
// presence, and POSTs what it saw to the report URL. Parameters:
//   expect=N      visitors in the room, this one included
//   leaver=NAME   who leaves once everyone has seen everyone; the others time its leave
//   crash=1       the leaver does not leave: it reports while still in the room, and the
//                 test kills its browser; the others time how long it is still shown
//   spread=1      (with several workers) rejoin while every visitor is on this page's
//                 worker, so that the room spans two workers; bounded attempts
//   deadline=S    report whatever was seen after S seconds
//   linger=S      stay S more seconds before reporting (more points on the charts)
import { charts, events, say, start, state } from "/static/room.js";

const params = new URLSearchParams(location.search);
const expect = Number(params.get("expect") ?? 2);
const leaver = params.get("leaver") ?? "";
const spread = params.get("spread") === "1";
const crash = params.get("crash") === "1";
const deadline = Date.now() + 1000 * Number(params.get("deadline") ?? 45);
const DONE = "I can see all of you";
const MAX_ATTEMPTS = 12;
const MIN_CURSORS = 5;

const seen = new Map(); // name -> {joins, chats, cursors, done}
const report = { name: state.name, attempts: 0, pid: null, pids: [], errors: [] };

function about(name) {
  if (!seen.has(name)) seen.set(name, { joins: 0, chats: 0, cursors: 0, done: false });
  return seen.get(name);
}
const others = () => [...seen.keys()].filter((name) => name !== state.name);
const present = () => new Set([...state.people.values()].map((person) => person.name));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

events.addEventListener("welcome", ({ detail }) => {
  for (const person of detail.members) if (person.name !== state.name) about(person.name).joins += 1;
});
events.addEventListener("presence", ({ detail: { kind, who } }) => {
  if (who.name === state.name) return;
  if (kind === "join") {
    about(who.name).joins += 1;
    say(`welcome, ${who.name}!`).catch(() => {});
  } else if (who.name === leaver && report.leaverGoneAt === undefined && !present().has(leaver)) {
    report.leaverGoneAt = Date.now();
  }
});
events.addEventListener("chat", ({ detail }) => {
  const entry = about(detail.name);
  entry.chats += 1;
  if (detail.text.startsWith(DONE)) entry.done = true;
});
events.addEventListener("cursor", ({ detail }) => {
  const person = state.people.get(detail.id);
  if (person) about(person.name).cursors += 1;
});

// A cursor that moves by itself, 25 datagrams a second, on a curve of its own.
let phase = [...state.name].reduce((sum, char) => sum + char.charCodeAt(0), 0);
setInterval(() => {
  phase += 0.05;
  const x = 0.5 + 0.38 * Math.sin(phase * 1.3);
  const y = 0.5 + 0.34 * Math.sin(phase * 0.9 + 1);
  if (state.room?.you && !state.room.closed) state.room.move(x, y).catch(() => {});
}, 40);

async function join() {
  report.attempts += 1;
  const you = await start();
  report.pid = you.pid;
  report.pids.push(you.pid);
  await say(`hi, I'm ${state.name}`);
}

function seesEveryone() {
  const here = present();
  const names = others().filter((name) => here.has(name));
  return names.length >= expect - 1 &&
    names.every((name) => seen.get(name).chats > 0 && seen.get(name).cursors >= MIN_CURSORS);
}

async function until(condition, what) {
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function main() {
  await join();
  if (spread) {
    // SO_REUSEPORT hashes each connection's addresses to a worker: a new session (a new
    // UDP port) lands on either worker, so rejoin until the room spans two.
    await until(() => present().size >= expect, "everyone to join");
    const onMine = () => [...state.people.values()].every((person) => person.pid === report.pid);
    while (onMine() && report.attempts < MAX_ATTEMPTS) {
      await join();
      await until(() => present().size >= expect, "everyone to be present after rejoining");
    }
  }
  await until(seesEveryone, "every other visitor's chat, cursor and presence");
  await until(() => Object.values(charts).every((chart) => chart.values.length >= 3), "three points on every chart");
  await say(`${DONE} ✓`);
  report.sawEveryoneAt = Date.now();
  if (state.name === leaver) {
    await until(() => others().filter((name) => seen.get(name).done).length >= expect - 1, "the others to see me");
    if (crash) return; // reported as it is: the test kills the browser
    report.leftAt = Date.now();
    await state.room.leave();
    return;
  }
  if (leaver) await until(() => report.leaverGoneAt !== undefined, `${leaver} to be shown as gone`);
  await sleep(1000 * Number(params.get("linger") ?? 0));
}

main()
  .catch((error) => report.errors.push(String(error?.message ?? error)))
  .finally(async () => {
    Object.assign(report, {
      userAgent: navigator.userAgent,
      seen: Object.fromEntries(seen),
      peopleShown: [...document.querySelectorAll("#people li")].map((item) => item.dataset.name),
      status: document.getElementById("status").textContent,
      charts: Object.fromEntries(Object.values(charts).map((chart) => [chart.title, {
        values: chart.values,
        points: (chart.line.getAttribute("points") ?? "").split(" ").filter(Boolean).length,
      }])),
      sources: document.getElementById("sources").textContent,
      view: state.view,
    });
    await fetch(params.get("report"), { method: "POST", body: JSON.stringify(report) });
  });
