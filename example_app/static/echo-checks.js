// The echo checks page (/echo-checks): exercises the example app's endpoints from a real
// browser: /echo (bidirectional, unidirectional and datagram echo, datagrams up to the page's
// own maxDatagramSize, a stream reset mid-echo that the session survives, and a clean close)
// and /structured (typed messages with the structured wire format, spoken by
// /static/structured.js).
import { StructuredStream } from "/static/structured.js";
import { connect } from "/_webtransport/js/webtransport.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const results = [];

function show(name, ok, detail) {
  results.push({ name, ok, detail });
  const row = document.createElement("tr");
  row.innerHTML = `<td>${name}</td><td class="${ok ? "pass" : "fail"}">${ok ? "pass" : "FAIL"}</td><td></td>`;
  row.lastChild.textContent = detail;
  document.getElementById("results").append(row);
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((size, chunk) => size + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) { out.set(chunk, offset); offset += chunk.byteLength; }
  return out;
}

async function readAll(readable) {
  const chunks = [];
  for await (const chunk of readable) chunks.push(chunk);
  return concat(chunks);
}

function pattern(size) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) & 0xff;
  return data;
}

function same(a, b) {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

// connect() fetches the development certificate's hash and pins it; a hash given in the
// page's URL (as printed by the CLI) wins over the served one.
const certificateHash = new URLSearchParams(location.search).get("hash") ?? undefined;
const open = (path) => connect(path, { certificateHash });

async function check(name, fn) {
  try {
    const detail = await fn();
    show(name, true, detail);
  } catch (error) {
    show(name, false, String(error && error.stack ? error.message : error));
  }
}

async function bidiEcho(transport, size) {
  const stream = await transport.createBidirectionalStream();
  const payload = pattern(size);
  const writer = stream.writable.getWriter();
  const reading = readAll(stream.readable);
  await writer.write(payload);
  await writer.close();
  const echoed = await reading;
  if (!same(payload, echoed)) throw new Error(`echoed ${echoed.byteLength} of ${size} bytes, or different bytes`);
  return `${size} bytes echoed`;
}

async function uniEcho(transport, incoming) {
  const stream = await transport.createUnidirectionalStream();
  const writer = stream.getWriter();
  const payload = encoder.encode("hello over a unidirectional stream");
  await writer.write(payload);
  await writer.close();
  const { value } = await incoming.read();
  const echoed = await readAll(value);
  if (!same(payload, echoed)) throw new Error(`got ${JSON.stringify(decoder.decode(echoed))}`);
  return "echoed on a server-opened unidirectional stream";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One reader and one writer for the session's datagrams, shared by every check. A read that
// timed out stays pending and is taken by the next call, so no datagram is lost to a
// released lock.
class Datagrams {
  constructor(transport) {
    this.writer = transport.datagrams.writable.getWriter();
    this.reader = transport.datagrams.readable.getReader();
    this.pending = null;
  }

  send(bytes) {
    return this.writer.write(bytes);
  }

  // The next datagram, or null after `ms` milliseconds.
  async next(ms) {
    this.pending ??= this.reader.read();
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), ms); });
    const result = await Promise.race([this.pending, timeout]);
    clearTimeout(timer);
    if (result === null) return null;
    this.pending = null;
    if (result.done) throw new Error("the datagram stream ended");
    return result.value;
  }

  // Send `payload` until it comes back byte-exact: datagrams are unreliable, so up to
  // `attempts` sends, each given `ms` milliseconds. Datagrams from earlier checks are skipped;
  // the first byte of `payload` is its tag. Throws if it never comes back.
  async echo(payload, { attempts = 6, ms = 500 } = {}) {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      await this.send(payload);
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        const got = await this.next(deadline - Date.now());
        if (got === null) break;
        if (got.byteLength === payload.byteLength && got[0] === payload[0]) {
          if (!same(got, payload)) throw new Error(`a ${payload.byteLength}-byte datagram came back with different bytes`);
          return attempt;
        }
      }
    }
    throw new Error(`a ${payload.byteLength}-byte datagram never came back (${attempts} sends)`);
  }
}

async function datagramEcho(transport, datagrams) {
  const sent = new Set();
  const got = new Set();
  // Datagrams are unreliable: send a few, in several rounds, and require most back.
  for (let round = 0; round < 5 && got.size < 8; round++) {
    for (let i = 0; i < 10; i++) {
      const text = `datagram ${round}-${i}`;
      sent.add(text);
      await datagrams.send(encoder.encode(text));
    }
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline && got.size < sent.size) {
      const value = await datagrams.next(deadline - Date.now());
      if (value === null) break;
      got.add(decoder.decode(value));
    }
  }
  for (const text of got) if (!sent.has(text)) throw new Error(`unexpected datagram ${text}`);
  if (got.size < 8) throw new Error(`only ${got.size} of ${sent.size} datagrams came back`);
  return `${got.size}/${sent.size} echoed, maxDatagramSize ${transport.datagrams.maxDatagramSize}`;
}

let nextTag = 0x80; // first byte of each sized datagram; text datagrams start below 0x80

function tagged(size) {
  const payload = pattern(size);
  payload[0] = nextTag;
  nextTag = nextTag === 0xff ? 0x80 : nextTag + 1;
  return payload;
}

// Datagrams of several sizes up to the page's own maxDatagramSize, the maximum itself
// included, each echoed byte-exact. `limits` are the values read at ready and later.
async function datagramSizes(datagrams, limits, record) {
  const sizes = new Set();
  for (const max of limits) {
    if (!Number.isInteger(max) || max < 64) throw new Error(`maxDatagramSize is ${max}`);
    for (const size of [64, 512, max - 1, max]) sizes.add(size);
  }
  const echoed = [];
  for (const size of [...sizes].sort((a, b) => a - b)) {
    const attempts = await datagrams.echo(tagged(size));
    echoed.push(size);
    record.echoed = echoed;
    if (attempts > 1) record.resent = (record.resent ?? 0) + attempts - 1;
  }
  return `maxDatagramSize ${limits.join(" then ")}: echoed ${echoed.join(", ")} bytes`;
}

async function readAtLeast(reader, size) {
  const chunks = [];
  let got = 0;
  while (got < size) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the echo ended after ${got} of ${size} bytes`);
    chunks.push(value);
    got += value.byteLength;
  }
  return concat(chunks);
}

function streamError(code) {
  // The WebTransport API's way to give a reset its code; a plain error resets with code 0.
  try {
    return new WebTransportError("reset by the echo checks", { streamErrorCode: code });
  } catch {
    return new Error("reset by the echo checks");
  }
}

// Two echoed streams, both mid-echo: the first chunk of each has come back. One is then
// reset (RESET_STREAM and STOP_SENDING, the page's writer.abort and reader.cancel); the
// other must finish its echo byte-exact, and then a new stream and a datagram must still
// echo on the same session.
async function resetMidEcho(transport, datagrams) {
  const first = pattern(4096);
  const rest = pattern(64 * 1024).map((byte) => byte ^ 0x5a);
  const [kept, doomed] = [await transport.createBidirectionalStream(), await transport.createBidirectionalStream()];
  const keptWriter = kept.writable.getWriter();
  const keptReader = kept.readable.getReader();
  const doomedWriter = doomed.writable.getWriter();
  const doomedReader = doomed.readable.getReader();
  await Promise.all([keptWriter.write(first), doomedWriter.write(first)]);
  const [keptHead, doomedHead] = await Promise.all([
    readAtLeast(keptReader, first.byteLength),
    readAtLeast(doomedReader, first.byteLength),
  ]);
  if (!same(doomedHead, first)) throw new Error("the stream to reset echoed different bytes");
  await Promise.all([doomedWriter.abort(streamError(7)), doomedReader.cancel(streamError(7))]);
  await sleep(300); // the reset reaches the server while the other stream is still open
  await keptWriter.write(rest);
  await keptWriter.close();
  keptReader.releaseLock();
  const echoed = concat([keptHead, await readAll(kept.readable)]);
  const whole = concat([first, rest]);
  if (!same(echoed, whole)) throw new Error(`the other stream echoed ${echoed.byteLength} of ${whole.byteLength} bytes, or different bytes`);
  const after = await bidiEcho(transport, 1000);
  await datagrams.echo(tagged(100));
  const closed = await Promise.race([transport.closed.then(() => "closed", () => "failed"), sleep(0).then(() => "open")]);
  if (closed !== "open") throw new Error(`the session ${closed}`);
  return `the other stream echoed ${whole.byteLength} bytes; then a new stream (${after}) and a datagram on the same session`;
}

async function structured() {
  const transport = await open("/structured");
  const stream = new StructuredStream(await transport.createBidirectionalStream());
  const replies = [];
  for (let i = 0; i < 3; i++) {
    await stream.send(1, { seq: i, text: `hello ${i}` });
    const { typeId, value } = await stream.receive();
    if (typeId !== 2 || value.seq !== i) throw new Error(`reply ${JSON.stringify({ typeId, value })}`);
    replies.push(value.text);
  }
  await stream.send(1, { seq: "not a number", text: "bad" });
  const { typeId, value } = await stream.receive();
  if (typeId !== 3) throw new Error(`expected an error message, got ${JSON.stringify(value)}`);
  transport.close();
  return `${replies.join(", ")}; invalid input answered with: ${value.detail}`;
}

// Details a test reads besides pass/fail, keyed by check.
const measured = {};

async function main() {
  const status = document.getElementById("status");
  const transport = await open("/echo");
  const readyAt = Date.now();
  const limits = [transport.datagrams.maxDatagramSize];
  measured.maxDatagramSize = { ready: limits[0] };
  show("session", true, "connected to /echo");
  const incoming = transport.incomingUnidirectionalStreams.getReader();
  // Chromium drops received datagrams beyond a small queue while the page is busy (here,
  // writing a burst): about two in three of a burst of ten on loopback. A page that reads
  // datagrams in bursts raises the queue's high-water mark.
  transport.datagrams.incomingHighWaterMark = 64;
  const datagrams = new Datagrams(transport);
  await check("bidirectional echo (small)", () => bidiEcho(transport, 11));
  await check("bidirectional echo (1 MiB)", () => bidiEcho(transport, 1 << 20));
  await check("unidirectional echo", () => uniEcho(transport, incoming));
  await check("datagram echo", () => datagramEcho(transport, datagrams));
  await check("datagrams up to maxDatagramSize", async () => {
    // Firefox raises its limit shortly after ready: read it again later, test both values.
    await sleep(readyAt + 2000 - Date.now());
    const later = transport.datagrams.maxDatagramSize;
    measured.maxDatagramSize.later = later;
    if (later !== limits[0]) limits.push(later);
    return await datagramSizes(datagrams, limits, measured.maxDatagramSize);
  });
  await check("stream reset mid-echo", () => resetMidEcho(transport, datagrams));
  await check("close with code and reason", async () => {
    transport.close({ closeCode: 4000, reason: "done" });
    const info = await transport.closed;
    return `closed (${JSON.stringify(info)})`;
  });
  await check("structured messages", () => structured());
  const failed = results.filter((r) => !r.ok).length;
  status.textContent = failed ? `${failed} check(s) failed` : "all checks passed";
}

main()
  .catch((error) => show("page", false, String(error)))
  .finally(async () => {
    const report = new URLSearchParams(location.search).get("report");
    if (report) {
      await fetch(report, { method: "POST", body: JSON.stringify({ userAgent: navigator.userAgent, results, measured }) });
    }
  });
