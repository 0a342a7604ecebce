// The room page's protocol, without any drawing: one Room is one visitor's session to
// /rooms/{room}/live (example_app/live.py has the server side and the same type ids).
//
//   chat      a bidirectional stream of typed messages (structured.js): Say and Ping up;
//             Welcome, Pong and ServerView (the server's own figures, every second) down
//   chat feed what the others say (Chat), on one ordered unidirectional stream
//   presence  each join and leave of the room, on a new unidirectional stream
//   cursors   datagrams: Move up, Cursor (who, where) down
//
// Events (CustomEvent, details in brackets): welcome {you, members}, chat {id, name, text,
// at}, presence {kind, who}, cursor {id, x, y}, view (a ServerView), pong {rtt}, closed
// {closeCode, reason} or {error}.
import { connect } from "/_webtransport/js/webtransport.js";
import { StructuredStream, decodeDatagram, encodeDatagram } from "/_webtransport/js/structured.js";

export const TYPE = { Say: 1, Ping: 2, Welcome: 10, Pong: 11, ServerView: 12, Chat: 20, Presence: 30, Move: 40, Cursor: 41 };
const WELCOME_TIMEOUT_MS = 10000;

export class Room extends EventTarget {
  constructor(room, name, { certificateHash } = {}) {
    super();
    this.room = room;
    this.name = name;
    this.certificateHash = certificateHash;
    this.transport = null;
    this.you = null;
    this.datagramsSent = 0;
    this.datagramsReceived = 0;
    this.streamsReceived = 0;
    this.closed = false;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // Fetches a token, opens the session and the chat stream; resolves on Welcome. Every
  // failure is an Error whose message says which step failed and why.
  async join() {
    const base = `/rooms/${encodeURIComponent(this.room)}`;
    const answer = await fetch(`${base}/token?name=${encodeURIComponent(this.name)}`, { method: "POST" });
    if (!answer.ok) throw new Error(`POST ${base}/token answered ${answer.status}: ${await answer.text()}`);
    const { name, token } = await answer.json();
    this.name = name;
    const path = `${base}/live?name=${encodeURIComponent(name)}&token=${encodeURIComponent(token)}`;
    try {
      this.transport = await connect(path, { certificateHash: this.certificateHash });
    } catch (error) {
      throw new Error(`could not open a WebTransport session to ${base}/live: ${error?.message ?? error}`);
    }
    this.transport.closed.then(
      (info) => this._ended(info ?? {}),
      (error) => this._ended({ error: String(error?.message ?? error) }),
    );
    this.chat = new StructuredStream(await this.transport.createBidirectionalStream());
    this.datagrams = this.transport.datagrams.writable.getWriter();
    const welcome = new Promise((resolve, reject) => {
      this.addEventListener("welcome", (event) => resolve(event.detail), { once: true });
      setTimeout(() => reject(new Error(`no Welcome from ${base}/live within ${WELCOME_TIMEOUT_MS} ms`)), WELCOME_TIMEOUT_MS);
    });
    await this.ping(); // a stream reaches the server with its first bytes
    this._readChat();
    this._readPushed();
    this._readDatagrams();
    await welcome;
    return this.you;
  }

  async say(text) {
    await this.chat.send(TYPE.Say, { text });
  }

  async ping() {
    await this.chat.send(TYPE.Ping, { sent: performance.now() });
  }

  // x and y are fractions of the stage (0..1). A datagram: lost or late ones do not matter.
  async move(x, y) {
    if (this.closed) return;
    const data = encodeDatagram(TYPE.Move, { x, y }, this.transport.datagrams.maxDatagramSize);
    this.datagramsSent += 1;
    await this.datagrams.write(data);
  }

  async leave() {
    if (!this.closed) this.transport.close({ closeCode: 0, reason: "left the room" });
    await this.transport.closed.catch(() => {});
  }

  // What the browser measures for this session (RTT, bytes), where it implements
  // WebTransport.getStats(); null elsewhere.
  async browserStats() {
    if (typeof this.transport?.getStats !== "function") return null;
    try {
      return await this.transport.getStats();
    } catch {
      return null;
    }
  }

  _ended(detail) {
    if (this.closed) return;
    this.closed = true;
    this._emit("closed", detail);
  }

  async _readChat() {
    try {
      for await (const { typeId, value } of this.chat) {
        if (typeId === TYPE.Welcome) {
          this.you = value.you;
          this._emit("welcome", value);
        }
        else if (typeId === TYPE.Pong) this._emit("pong", { rtt: performance.now() - value.sent });
        else if (typeId === TYPE.ServerView) this._emit("view", value);
      }
    } catch (error) {
      if (!this.closed) console.warn("chat stream:", error);
    }
  }

  async _readPushed() {
    try {
      for await (const stream of this.transport.incomingUnidirectionalStreams) {
        this.streamsReceived += 1;
        this._readFeed(new StructuredStream({ readable: stream }));
      }
    } catch (error) {
      if (!this.closed) console.warn("incoming streams:", error);
    }
  }

  async _readFeed(stream) {
    try {
      for await (const { typeId, value } of stream) {
        if (typeId === TYPE.Chat) this._emit("chat", value);
        else if (typeId === TYPE.Presence) this._emit("presence", value);
      }
    } catch (error) {
      if (!this.closed) console.warn("pushed stream:", error);
    }
  }

  async _readDatagrams() {
    try {
      for await (const data of this.transport.datagrams.readable) {
        this.datagramsReceived += 1;
        let message;
        try {
          message = decodeDatagram(data);
        } catch {
          continue; // a datagram is a message of its own: a bad one costs only itself
        }
        if (message.typeId === TYPE.Cursor) this._emit("cursor", message.value);
      }
    } catch (error) {
      if (!this.closed) console.warn("datagrams:", error);
    }
  }
}
