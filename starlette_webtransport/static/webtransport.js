// Opening a WebTransport session from a page served by starlette-webtransport, without the
// certificate-pinning boilerplate: a development server publishes its certificate's SHA-256 at
// /_webtransport/certificate-hash, and connect() fetches it and passes it to
// serverCertificateHashes. Against a server with a CA-signed certificate (no such URL) it
// opens a plain session.
//
//   import { connect } from "/_webtransport/js/webtransport.js";
//   const transport = await connect("/echo");          // ready to use
//
// A path ("/echo") is resolved against the WebTransport server: the page's host name and the
// HTTP/3 port the server publishes (the page may come from --http-port). Options are those of
// new WebTransport(url, options), plus:
//   certificateHash     hex string (as printed by the CLI) to pin instead of the served one
//   certificateHashUrl  where the hash is published; null to never fetch it

export const CERTIFICATE_HASH_PATH = "/_webtransport/certificate-hash";

export function hexToBytes(hex) {
  if (typeof hex !== "string" || !/^([0-9a-fA-F]{2})+$/.test(hex)) {
    throw new TypeError(`not a hex string: ${JSON.stringify(hex)}`);
  }
  return Uint8Array.from(hex.match(/../g), (byte) => parseInt(byte, 16));
}

// The published hash ({hex, port, ...}), or null when the server publishes none (404: it was
// given a certificate, which browsers verify as usual).
export async function fetchCertificateHash(url = CERTIFICATE_HASH_PATH) {
  const response = await fetch(new URL(url, globalThis.location?.href));
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return await response.json();
}

export async function connect(url, options = {}) {
  const { certificateHash, certificateHashUrl = CERTIFICATE_HASH_PATH, ...init } = options;
  const info = certificateHashUrl === null ? null : await fetchCertificateHash(certificateHashUrl);
  let target = url;
  if (url.startsWith("/")) {
    const here = globalThis.location;
    const port = info?.port ?? here.port;
    const bare = here.hostname.includes(":") && !here.hostname.startsWith("[");
    const host = bare ? `[${here.hostname}]` : here.hostname;
    target = `https://${host}${port ? `:${port}` : ""}${url}`;
  }
  const hex = certificateHash ?? info?.hex;
  if (hex && !init.serverCertificateHashes) {
    init.serverCertificateHashes = [{ algorithm: "sha-256", value: hexToBytes(hex) }];
  }
  const transport = new WebTransport(target, init);
  await transport.ready;
  return transport;
}
