/**
 * VICI wire format: transport framing, packet layer and message tree, as documented in strongSwan's
 * vici plugin README ("The Versatile IKE Control Interface (VICI) protocol"). Pure functions over
 * Buffers, no I/O, so every rule here is testable with hand-written bytes.
 *
 * Layers, outermost first:
 *   transport  u32be length | packet            (length excludes itself, at most 512 KiB)
 *   packet     u8 type | [u8 len | name] | [message]
 *   message    sequence of elements: SECTION_START name, SECTION_END, KEY_VALUE name value,
 *              LIST_START name, LIST_ITEM value, LIST_END; names u8-length, values u16be-length
 */

import { CvlanError } from '../../errors.js';

// --- Specification constants (README "Transport protocol", "Packet layer", "Message format") ---

/** Largest transport segment the daemon accepts or sends: "currently limited to 512KB of data". */
export const VICI_MAX_SEGMENT = 512 * 1024;
/** Size of the transport length header (32-bit, network order). */
export const VICI_LENGTH_HEADER = 4;
/** Names (packet names, section/key/list names) carry an 8-bit length. */
export const VICI_MAX_NAME = 0xff;
/** Values (KEY_VALUE, LIST_ITEM) carry a 16-bit length. */
export const VICI_MAX_VALUE = 0xffff;

export const PacketType = {
  CMD_REQUEST: 0,
  CMD_RESPONSE: 1,
  CMD_UNKNOWN: 2,
  EVENT_REGISTER: 3,
  EVENT_UNREGISTER: 4,
  EVENT_CONFIRM: 5,
  EVENT_UNKNOWN: 6,
  EVENT: 7,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** Packet type number to its specification name, for messages. */
export const PACKET_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(PacketType).map(([k, v]) => [v, k]),
);

export const ElementType = {
  SECTION_START: 1,
  SECTION_END: 2,
  KEY_VALUE: 3,
  LIST_START: 4,
  LIST_ITEM: 5,
  LIST_END: 6,
} as const;

// --- Message tree ---

/** A decoded value: charon sends non-null-terminated strings (numbers too), or raw blobs. */
export type ViciValue = string | Buffer;

/**
 * A decoded section. Keys are unique per section (the format requires it). Plain objects keep
 * insertion order for non-numeric keys, which is the order charon cares about (auth rounds,
 * children); integer-like keys are enumerated first by JavaScript, so do not rely on their order.
 */
export interface ViciSection {
  [key: string]: ViciValue | ViciValue[] | ViciSection;
}

/** What the encoder accepts as a value: numbers become decimal strings, booleans `yes`/`no`. */
export type ViciInputValue = string | Buffer | number | bigint | boolean;

/** What the encoder accepts as a section. `undefined` members are skipped (optional keys). */
export interface ViciInputSection {
  [key: string]: ViciInputValue | readonly ViciInputValue[] | ViciInputSection | undefined;
}

export interface DecodeOptions {
  /** `string` (default) decodes values as UTF-8; `buffer` keeps raw blobs (certificates, keys). */
  values?: 'string' | 'buffer';
}

function protocolError(message: string, details?: Record<string, unknown>): CvlanError {
  return new CvlanError('CVLAN_ERR_VICI_PROTOCOL', message, details ? { details } : undefined);
}

export function isSection(v: ViciValue | ViciValue[] | ViciSection | undefined): v is ViciSection {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

function valueBytes(v: ViciInputValue, where: string): Buffer {
  let b: Buffer;
  if (Buffer.isBuffer(v)) b = v;
  else if (typeof v === 'string') b = Buffer.from(v, 'utf8');
  else if (typeof v === 'boolean') b = Buffer.from(v ? 'yes' : 'no', 'ascii');
  else if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw protocolError(`cannot encode non-finite number at ${where}`);
    b = Buffer.from(String(v), 'ascii');
  } else if (typeof v === 'bigint') b = Buffer.from(v.toString(10), 'ascii');
  else throw protocolError(`cannot encode a value of type ${typeof v} at ${where}`);
  if (b.length > VICI_MAX_VALUE) {
    // The value itself may be a secret: report only its size.
    throw protocolError(`value at ${where} is ${b.length} bytes, more than ${VICI_MAX_VALUE}`);
  }
  return b;
}

function nameBytes(name: string, where: string): Buffer {
  const b = Buffer.from(name, 'utf8');
  if (b.length === 0) throw protocolError(`empty name at ${where || '<root>'}`);
  if (b.length > VICI_MAX_NAME) throw protocolError(`name at ${where} is ${b.length} bytes, more than ${VICI_MAX_NAME}`);
  return b;
}

function isInputValue(v: unknown): v is ViciInputValue {
  return (
    typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' || Buffer.isBuffer(v)
  );
}

/** Encodes a message tree (the implicit root section) into VICI elements. */
export function encodeMessage(root: ViciInputSection): Buffer {
  const parts: Buffer[] = [];
  const named = (type: number, name: Buffer): void => {
    parts.push(Buffer.from([type, name.length]), name);
  };
  const valued = (v: Buffer): void => {
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(v.length, 0);
    parts.push(len, v);
  };
  const walk = (section: ViciInputSection, path: string, depth: number): void => {
    if (depth > 64) throw protocolError(`sections nested deeper than 64 at ${path}`);
    for (const [key, v] of Object.entries(section)) {
      if (v === undefined) continue;
      const where = path ? `${path}.${key}` : key;
      const name = nameBytes(key, where);
      if (isInputValue(v)) {
        named(ElementType.KEY_VALUE, name);
        valued(valueBytes(v, where));
      } else if (Array.isArray(v)) {
        named(ElementType.LIST_START, name);
        (v as readonly unknown[]).forEach((item, i) => {
          if (!isInputValue(item)) throw protocolError(`list item ${where}[${i}] must be a string, Buffer or number`);
          parts.push(Buffer.from([ElementType.LIST_ITEM]));
          valued(valueBytes(item, `${where}[${i}]`));
        });
        parts.push(Buffer.from([ElementType.LIST_END]));
      } else if (typeof v === 'object' && v !== null) {
        named(ElementType.SECTION_START, name);
        walk(v as ViciInputSection, where, depth + 1);
        parts.push(Buffer.from([ElementType.SECTION_END]));
      } else {
        throw protocolError(`cannot encode a value of type ${typeof v} at ${where}`);
      }
    }
  };
  walk(root, '', 0);
  return Buffer.concat(parts);
}

/** Decodes VICI elements into a message tree. Any deviation from the format is CVLAN_ERR_VICI_PROTOCOL. */
export function decodeMessage(buf: Buffer, options: DecodeOptions = {}): ViciSection {
  const asBuffer = options.values === 'buffer';
  let pos = 0;
  const need = (n: number, what: string): void => {
    if (pos + n > buf.length) {
      throw protocolError(`truncated message: ${what} needs ${n} bytes at offset ${pos}, ${buf.length - pos} left`, {
        offset: pos,
      });
    }
  };
  const readName = (what: string): string => {
    need(1, `${what} name length`);
    const len = buf[pos++]!;
    if (len === 0) throw protocolError(`empty ${what} name at offset ${pos - 1}`, { offset: pos - 1 });
    need(len, `${what} name`);
    const s = buf.toString('utf8', pos, pos + len);
    pos += len;
    return s;
  };
  const readValue = (what: string): ViciValue => {
    need(2, `${what} value length`);
    const len = buf.readUInt16BE(pos);
    pos += 2;
    need(len, `${what} value`);
    const slice = buf.subarray(pos, pos + len);
    pos += len;
    return asBuffer ? Buffer.from(slice) : slice.toString('utf8');
  };
  const define = (section: ViciSection, key: string, v: ViciSection[string], at: number): void => {
    if (Object.prototype.hasOwnProperty.call(section, key)) {
      throw protocolError(`duplicate key "${key}" at offset ${at}`, { offset: at });
    }
    // defineProperty, not assignment: a key named "__proto__" must stay data, not touch the prototype.
    Object.defineProperty(section, key, { value: v, enumerable: true, writable: true, configurable: true });
  };

  const root: ViciSection = {};
  const stack: ViciSection[] = [root];
  let list: ViciValue[] | null = null;
  while (pos < buf.length) {
    const at = pos;
    const type = buf[pos++]!;
    const current = stack[stack.length - 1]!;
    if (list !== null && type !== ElementType.LIST_ITEM && type !== ElementType.LIST_END) {
      throw protocolError(`element type ${type} inside a list at offset ${at}`, { offset: at });
    }
    switch (type) {
      case ElementType.SECTION_START: {
        const name = readName('section');
        const child: ViciSection = {};
        define(current, name, child, at);
        stack.push(child);
        break;
      }
      case ElementType.SECTION_END:
        if (stack.length === 1) throw protocolError(`SECTION_END without open section at offset ${at}`, { offset: at });
        stack.pop();
        break;
      case ElementType.KEY_VALUE: {
        const name = readName('key');
        define(current, name, readValue('key'), at);
        break;
      }
      case ElementType.LIST_START: {
        const name = readName('list');
        list = [];
        define(current, name, list, at);
        break;
      }
      case ElementType.LIST_ITEM:
        if (list === null) throw protocolError(`LIST_ITEM outside a list at offset ${at}`, { offset: at });
        list.push(readValue('list item'));
        break;
      case ElementType.LIST_END:
        if (list === null) throw protocolError(`LIST_END without open list at offset ${at}`, { offset: at });
        list = null;
        break;
      default:
        throw protocolError(`unknown element type ${type} at offset ${at}`, { offset: at, type });
    }
  }
  if (list !== null) throw protocolError('message ends inside an open list');
  if (stack.length !== 1) throw protocolError(`message ends with ${stack.length - 1} unclosed section(s)`);
  return root;
}

// --- Packet layer ---

export type ViciPacket =
  | { type: typeof PacketType.CMD_REQUEST; name: string; message: ViciSection }
  | { type: typeof PacketType.CMD_RESPONSE; message: ViciSection }
  | { type: typeof PacketType.CMD_UNKNOWN }
  | { type: typeof PacketType.EVENT_REGISTER; name: string }
  | { type: typeof PacketType.EVENT_UNREGISTER; name: string }
  | { type: typeof PacketType.EVENT_CONFIRM }
  | { type: typeof PacketType.EVENT_UNKNOWN }
  | { type: typeof PacketType.EVENT; name: string; message: ViciSection };

const NAMED: ReadonlySet<number> = new Set([
  PacketType.CMD_REQUEST,
  PacketType.EVENT_REGISTER,
  PacketType.EVENT_UNREGISTER,
  PacketType.EVENT,
]);
const WITH_MESSAGE: ReadonlySet<number> = new Set([PacketType.CMD_REQUEST, PacketType.CMD_RESPONSE, PacketType.EVENT]);

/**
 * Encodes a packet (without the transport length header). `name` is required for the named
 * types and refused for the others; `message` only for CMD_REQUEST, CMD_RESPONSE and EVENT.
 */
export function encodePacket(type: PacketType, name?: string, message?: ViciInputSection | Buffer): Buffer {
  if (!(type in PACKET_NAMES)) throw protocolError(`unknown packet type ${String(type)}`);
  const parts: Buffer[] = [Buffer.from([type])];
  if (NAMED.has(type)) {
    if (name === undefined) throw protocolError(`packet type ${PACKET_NAMES[type]} needs a name`);
    const n = Buffer.from(name, 'ascii');
    if (n.length === 0 || n.length > VICI_MAX_NAME || !/^[\x21-\x7e]+$/.test(name)) {
      throw protocolError(`invalid ${PACKET_NAMES[type]} name "${name}"`);
    }
    parts.push(Buffer.from([n.length]), n);
  } else if (name !== undefined) {
    throw protocolError(`packet type ${PACKET_NAMES[type]} has no name`);
  }
  if (WITH_MESSAGE.has(type)) {
    if (message !== undefined) parts.push(Buffer.isBuffer(message) ? message : encodeMessage(message));
  } else if (message !== undefined) {
    throw protocolError(`packet type ${PACKET_NAMES[type]} has no message`);
  }
  const packet = Buffer.concat(parts);
  if (packet.length > VICI_MAX_SEGMENT) {
    throw protocolError(`packet is ${packet.length} bytes, more than the ${VICI_MAX_SEGMENT}-byte segment limit`);
  }
  return packet;
}

/** Decodes one packet (the bytes of one transport segment). */
export function decodePacket(buf: Buffer, options: DecodeOptions = {}): ViciPacket {
  if (buf.length === 0) throw protocolError('empty packet (no packet type)');
  const type = buf[0]!;
  if (!(type in PACKET_NAMES)) throw protocolError(`unknown packet type ${type}`, { type });
  let pos = 1;
  let name: string | undefined;
  if (NAMED.has(type)) {
    if (buf.length < 2) throw protocolError(`truncated ${PACKET_NAMES[type]} packet: no name length`);
    const len = buf[1]!;
    if (len === 0) throw protocolError(`${PACKET_NAMES[type]} packet with an empty name`);
    if (2 + len > buf.length) {
      throw protocolError(`truncated ${PACKET_NAMES[type]} packet: name of ${len} bytes, ${buf.length - 2} left`);
    }
    name = buf.toString('latin1', 2, 2 + len);
    pos = 2 + len;
  }
  const rest = buf.subarray(pos);
  if (!WITH_MESSAGE.has(type)) {
    if (rest.length !== 0) throw protocolError(`${PACKET_NAMES[type]} packet has ${rest.length} trailing bytes`);
    switch (type) {
      case PacketType.CMD_UNKNOWN:
      case PacketType.EVENT_CONFIRM:
      case PacketType.EVENT_UNKNOWN:
        return { type };
      default:
        return { type: type as typeof PacketType.EVENT_REGISTER | typeof PacketType.EVENT_UNREGISTER, name: name! };
    }
  }
  const message = decodeMessage(rest, options);
  if (type === PacketType.CMD_RESPONSE) return { type, message };
  return { type: type as typeof PacketType.CMD_REQUEST | typeof PacketType.EVENT, name: name!, message };
}

// --- Transport layer ---

/** Prefixes a packet with its 32-bit network-order length. */
export function frame(packet: Buffer): Buffer {
  if (packet.length > VICI_MAX_SEGMENT) {
    throw protocolError(`segment of ${packet.length} bytes exceeds ${VICI_MAX_SEGMENT}`);
  }
  const header = Buffer.allocUnsafe(VICI_LENGTH_HEADER);
  header.writeUInt32BE(packet.length, 0);
  return Buffer.concat([header, packet]);
}

/**
 * Reassembles transport segments from a byte stream. A length above the limit means the stream
 * is out of step (or not VICI at all); the connection cannot recover and must be closed.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Adds bytes from the stream; returns every segment completed by them, in order. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buffered < VICI_LENGTH_HEADER) break;
      const head = this.peek(VICI_LENGTH_HEADER);
      const len = head.readUInt32BE(0);
      if (len > VICI_MAX_SEGMENT) {
        throw protocolError(`segment length ${len} exceeds ${VICI_MAX_SEGMENT}`, { length: len });
      }
      if (this.buffered < VICI_LENGTH_HEADER + len) break;
      const all = this.take(VICI_LENGTH_HEADER + len);
      out.push(all.subarray(VICI_LENGTH_HEADER));
    }
    return out;
  }

  /** Bytes received but not yet forming a whole segment. */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const seg = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return seg;
  }
}
