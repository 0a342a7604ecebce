// Runs connect() of static/webtransport.js under node for test_connect_js.py. The module is
// fetched from the server under test (the URL pages import it from) and imported from that
// text; the certificate hash is fetched from the same server by connect() itself. Node has
// no WebTransport, so a stand-in records what a browser's constructor would be given.
// stdin: {page, module, url, options}; stdout: {url, hashes, error}.
const request = JSON.parse(await new Response(process.stdin).text());
globalThis.location = new URL(request.page);
const made = [];
globalThis.WebTransport = class {
  constructor(url, init) {
    made.push({ url, init });
    this.ready = Promise.resolve();
  }
};
const source = await (await fetch(request.module)).text();
const module = await import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
let error = null;
try {
  await module.connect(request.url, request.options ?? {});
} catch (caught) {
  error = String(caught);
}
const { url, init } = made[0] ?? {};
const hashes = (init?.serverCertificateHashes ?? []).map(({ algorithm, value }) => ({
  algorithm,
  hex: Buffer.from(value).toString("hex"),
}));
process.stdout.write(JSON.stringify({ url: url ?? null, hashes, error, fetched: source.length }));
