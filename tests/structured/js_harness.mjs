// Runs static/structured.js under node for test_structured_js.py: reads one JSON
// request on stdin, writes one JSON answer on stdout. Bytes travel as base64.
import * as structured from "../../starlette_webtransport/static/structured.js";

const fromBase64 = (text) => new Uint8Array(Buffer.from(text, "base64"));
const toBase64 = (bytes) => Buffer.from(bytes).toString("base64");

function describe(error) {
  const { name, message, expected, received, size, limit, typeId } = error;
  return { name, message, expected, received, size, limit, typeId };
}

// A stream of the given pieces, then FIN unless fin is false (then the peer just
// stops sending): what a WebTransportReceiveStream delivers.
function readableOf(pieces, cancelled, fin = true) {
  let index = 0;
  return new ReadableStream({
    pull(controller) {
      if (index < pieces.length) controller.enqueue(pieces[index++]);
      else if (fin) controller.close();
      else return new Promise(() => {});
    },
    cancel(reason) {
      cancelled.push({ name: reason.name, message: reason.message });
    },
  });
}

const operations = {
  async receive({ pieces, maxMessageSize, fin }) {
    const cancelled = [];
    const stream = new structured.StructuredStream(
      { readable: readableOf(pieces.map(fromBase64), cancelled, fin) },
      { maxMessageSize },
    );
    const messages = [];
    for (;;) {
      try {
        const message = await stream.receive();
        if (message === null) return { messages, error: null, cancelled };
        messages.push(message);
      } catch (error) {
        if (error instanceof structured.MessageDecodeError) {
          messages.push(describe(error));
          continue;
        }
        return { messages, error: describe(error), cancelled, after: await stream.receive() };
      }
    }
  },

  async iterate({ pieces }) {
    const stream = new structured.StructuredStream({ readable: readableOf(pieces.map(fromBase64), []) });
    const messages = [];
    for await (const message of stream) messages.push(message);
    return { messages };
  },

  async send({ messages, maxMessageSize }) {
    const writes = [];
    let closed = false;
    const writable = new WritableStream({
      write(chunk) {
        writes.push(toBase64(chunk));
      },
      close() {
        closed = true;
      },
    });
    const stream = new structured.StructuredStream({ writable }, { maxMessageSize });
    const errors = [];
    for (const [typeId, value] of messages) {
      try {
        await stream.send(typeId, value);
      } catch (error) {
        errors.push(describe(error));
      }
    }
    await stream.close();
    return { writes, closed, errors };
  },

  async datagrams({ encode, decode, maxDatagramSize }) {
    const encoded = [];
    for (const [typeId, value] of encode) {
      try {
        encoded.push(toBase64(structured.encodeDatagram(typeId, value, maxDatagramSize ?? Infinity)));
      } catch (error) {
        encoded.push(describe(error));
      }
    }
    const decoded = [];
    for (const data of decode) {
      try {
        decoded.push(structured.decodeDatagram(fromBase64(data)));
      } catch (error) {
        decoded.push(describe(error));
      }
    }
    return { encoded, decoded };
  },

  async constants() {
    const { HEADER_SIZE, DATAGRAM_HEADER_SIZE, MAX_TYPE_ID, DEFAULT_MAX_MESSAGE_SIZE, MESSAGE_TOO_LARGE_CODE } =
      structured;
    return { HEADER_SIZE, DATAGRAM_HEADER_SIZE, MAX_TYPE_ID, DEFAULT_MAX_MESSAGE_SIZE, MESSAGE_TOO_LARGE_CODE };
  },
};

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
process.stdout.write(JSON.stringify(await operations[request.op](request)));
