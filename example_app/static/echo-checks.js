// The echo checks page (/echo-checks): exercises the example app's endpoints from a real
// browser: /echo (bidirectional, unidirectional and datagram echo, and a clean close) and
// /structured (typed messages with the structured wire format, spoken by
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

async function readAll(readable) {
  const chunks = [];
  let size = 0;
  for await (const chunk of readable) { chunks.push(chunk); size += chunk.byteLength; }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) { out.set(chunk, offset); offset += chunk.byteLength; }
  return out;
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

async function datagramEcho(transport) {
  const writer = transport.datagrams.writable.getWriter();
  const reader = transport.datagrams.readable.getReader();
  const sent = new Set();
  const got = new Set();
  // Datagrams are unreliable: send a few, in several rounds, and require most back.
  for (let round = 0; round < 5 && got.size < 8; round++) {
    for (let i = 0; i < 10; i++) {
      const text = `datagram ${round}-${i}`;
      sent.add(text);
      await writer.write(encoder.encode(text));
    }
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline && got.size < sent.size) {
      const timeout = new Promise((resolve) => setTimeout(() => resolve(null), deadline - Date.now()));
      const result = await Promise.race([reader.read(), timeout]);
      if (!result) break;
      got.add(decoder.decode(result.value));
    }
  }
  for (const text of got) if (!sent.has(text)) throw new Error(`unexpected datagram ${text}`);
  if (got.size < 8) throw new Error(`only ${got.size} of ${sent.size} datagrams came back`);
  reader.releaseLock();
  writer.releaseLock();
  return `${got.size}/${sent.size} echoed, maxDatagramSize ${transport.datagrams.maxDatagramSize}`;
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

async function main() {
  const status = document.getElementById("status");
  const transport = await open("/echo");
  show("session", true, "connected to /echo");
  const incoming = transport.incomingUnidirectionalStreams.getReader();
  await check("bidirectional echo (small)", () => bidiEcho(transport, 11));
  await check("bidirectional echo (1 MiB)", () => bidiEcho(transport, 1 << 20));
  await check("unidirectional echo", () => uniEcho(transport, incoming));
  await check("datagram echo", () => datagramEcho(transport));
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
      await fetch(report, { method: "POST", body: JSON.stringify({ userAgent: navigator.userAgent, results }) });
    }
  });
