// Typed messages over WebTransport for browsers: the wire format of
// starlette_webtransport.structured (docs/structured.md) with JSON payloads, so it
// talks to a Python peer that uses JSONSerializer.
//
// Stream frame:  type id (u16, big-endian) | payload length (u32, big-endian) | payload
// Datagram:      type id (u16, big-endian) | payload
// Payload:       UTF-8 JSON of the message's fields.
//
//   import { StructuredStream } from "/static/structured.js";
//   const stream = new StructuredStream(await transport.createBidirectionalStream());
//   await stream.send(1, { seq: 1 });
//   for await (const { typeId, value } of stream) { ... }

export const HEADER_SIZE = 6;
export const DATAGRAM_HEADER_SIZE = 2;
export const MAX_TYPE_ID = 0xffff;
export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024;
// Sent with STOP_SENDING when the peer announces a frame over maxMessageSize.
export const MESSAGE_TOO_LARGE_CODE = 0x53540001;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export class StructuredError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

export class MessageTooLargeError extends StructuredError {
  constructor(what, size, limit) {
    super(`${what} is ${size} bytes, over the limit of ${limit} bytes`);
    this.size = size;
    this.limit = limit;
  }
}

export class TruncatedMessageError extends StructuredError {
  constructor(what, expected, received) {
    super(`${what} ended after ${received} of ${expected} bytes`);
    this.expected = expected;
    this.received = received;
  }
}

// The payload of a complete frame is not UTF-8 JSON; the frame has been consumed.
export class MessageDecodeError extends StructuredError {
  constructor(typeId, detail) {
    super(`cannot decode payload of type id ${typeId}: ${detail}`);
    this.typeId = typeId;
  }
}

function checkTypeId(typeId) {
  if (!Number.isInteger(typeId) || typeId < 0 || typeId > MAX_TYPE_ID) {
    throw new RangeError(`type id ${typeId} does not fit the wire's u16 field (0..${MAX_TYPE_ID})`);
  }
}

function encodePayload(value) {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError(`${typeof value} is not JSON-serializable`);
  return utf8Encoder.encode(json);
}

function decodePayload(typeId, payload) {
  try {
    return JSON.parse(utf8Decoder.decode(payload));
  } catch (error) {
    throw new MessageDecodeError(typeId, error.message);
  }
}

export function encodeFrame(typeId, value, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE) {
  checkTypeId(typeId);
  const payload = encodePayload(value);
  if (payload.length > maxMessageSize) {
    throw new MessageTooLargeError(`encoded message (type id ${typeId})`, payload.length, maxMessageSize);
  }
  const frame = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint16(0, typeId);
  view.setUint32(2, payload.length);
  frame.set(payload, HEADER_SIZE);
  return frame;
}

// Reassembles frames from chunks of a stream, whatever their boundaries. Frames that
// lie inside one chunk are returned as views of it, without copying.
export class FrameDecoder {
  constructor({ maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE } = {}) {
    this.maxMessageSize = maxMessageSize;
    this._chunks = [];
    this._offset = 0; // consumed bytes of this._chunks[0]
    this._available = 0;
  }

  get buffered() {
    return this._available;
  }

  push(chunk) {
    if (chunk.length === 0) return;
    this._chunks.push(chunk);
    this._available += chunk.length;
  }

  // The next complete frame as {typeId, payload}, or null until more data arrives.
  next() {
    if (this._available < HEADER_SIZE) return null;
    const header = this._peek(HEADER_SIZE);
    const view = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
    const typeId = view.getUint16(0);
    const length = view.getUint32(2);
    if (length > this.maxMessageSize) {
      throw new MessageTooLargeError(`incoming frame payload (type id ${typeId})`, length, this.maxMessageSize);
    }
    if (this._available < HEADER_SIZE + length) return null;
    const frame = this._take(HEADER_SIZE + length);
    return { typeId, payload: frame.subarray(HEADER_SIZE) };
  }

  // Call at FIN: throws TruncatedMessageError if part of a frame is left over.
  finish() {
    if (this._available === 0) return;
    if (this._available < HEADER_SIZE) {
      throw new TruncatedMessageError("stream inside a frame header", HEADER_SIZE, this._available);
    }
    const header = this._peek(HEADER_SIZE);
    const view = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
    const typeId = view.getUint16(0);
    throw new TruncatedMessageError(
      `stream inside a frame (type id ${typeId})`,
      HEADER_SIZE + view.getUint32(2),
      this._available,
    );
  }

  _peek(size) {
    const first = this._chunks[0];
    if (first.length - this._offset >= size) return first.subarray(this._offset, this._offset + size);
    const out = new Uint8Array(size);
    let filled = 0;
    let offset = this._offset;
    for (const chunk of this._chunks) {
      const part = chunk.subarray(offset, offset + size - filled);
      out.set(part, filled);
      filled += part.length;
      offset = 0;
      if (filled === size) break;
    }
    return out;
  }

  _take(size) {
    const out = this._peek(size);
    this._available -= size;
    let remaining = size;
    while (remaining > 0) {
      const left = this._chunks[0].length - this._offset;
      if (left > remaining) {
        this._offset += remaining;
        break;
      }
      remaining -= left;
      this._chunks.shift();
      this._offset = 0;
    }
    return out;
  }
}

// A reason for ReadableStream.cancel() that makes the browser send STOP_SENDING with
// `code` (WebTransport spec: a WebTransportError with streamErrorCode). Browsers that
// predate the (message, options) constructor take a single init dictionary.
function stopReason(code, message) {
  if (typeof WebTransportError === "function") {
    for (const args of [[message, { streamErrorCode: code }], [{ message, streamErrorCode: code }]]) {
      try {
        const error = new WebTransportError(...args);
        if (error.streamErrorCode === code) return error;
      } catch {
        // try the other constructor form
      }
    }
  }
  return new Error(message);
}

// Typed messages over a WebTransportBidirectionalStream, or over one direction given
// as {readable} (a WebTransportReceiveStream) or {writable} (a WebTransportSendStream).
export class StructuredStream {
  constructor(stream, { maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE } = {}) {
    this.maxMessageSize = maxMessageSize;
    this._reader = stream.readable ? stream.readable.getReader() : null;
    this._writer = stream.writable ? stream.writable.getWriter() : null;
    this._frames = new FrameDecoder({ maxMessageSize });
    this._ended = false;
  }

  // One write per frame, so concurrent sends never interleave.
  async send(typeId, value) {
    if (this._writer === null) throw new TypeError("this stream has no writable side");
    await this._writer.write(encodeFrame(typeId, value, this.maxMessageSize));
  }

  // FIN after the messages already sent.
  async close() {
    if (this._writer === null) throw new TypeError("this stream has no writable side");
    await this._writer.close();
  }

  // The next {typeId, value}, or null after the peer's FIN. Rejects with
  // MessageDecodeError (the frame is consumed: call again for the next one),
  // MessageTooLargeError (the stream is stopped with MESSAGE_TOO_LARGE_CODE),
  // TruncatedMessageError (FIN inside a frame), or the stream's own error on a reset.
  async receive() {
    if (this._reader === null) throw new TypeError("this stream has no readable side");
    while (!this._ended) {
      let frame;
      try {
        frame = this._frames.next();
      } catch (error) {
        this._ended = true;
        await this._reader.cancel(stopReason(MESSAGE_TOO_LARGE_CODE, error.message));
        throw error;
      }
      if (frame !== null) return { typeId: frame.typeId, value: decodePayload(frame.typeId, frame.payload) };
      const { value, done } = await this._reader.read();
      if (done) {
        this._ended = true;
        this._frames.finish();
      } else {
        this._frames.push(value);
      }
    }
    return null;
  }

  async *[Symbol.asyncIterator]() {
    for (let message = await this.receive(); message !== null; message = await this.receive()) {
      yield message;
    }
  }
}

// Pass transport.datagrams.maxDatagramSize as maxDatagramSize: browsers drop larger
// datagrams silently.
export function encodeDatagram(typeId, value, maxDatagramSize = Infinity) {
  checkTypeId(typeId);
  const payload = encodePayload(value);
  const size = DATAGRAM_HEADER_SIZE + payload.length;
  if (size > maxDatagramSize) {
    throw new MessageTooLargeError(`datagram (type id ${typeId})`, size, maxDatagramSize);
  }
  const datagram = new Uint8Array(size);
  new DataView(datagram.buffer).setUint16(0, typeId);
  datagram.set(payload, DATAGRAM_HEADER_SIZE);
  return datagram;
}

export function decodeDatagram(data) {
  if (data.length < DATAGRAM_HEADER_SIZE) {
    throw new TruncatedMessageError("datagram inside its header", DATAGRAM_HEADER_SIZE, data.length);
  }
  const typeId = (data[0] << 8) | data[1];
  return { typeId, value: decodePayload(typeId, data.subarray(DATAGRAM_HEADER_SIZE)) };
}
