import { inflateRawSync } from 'node:zlib';
import { compressSync, uncompressSync } from 'snappy';
import { ConnectionState, stateFromJson } from '@psp/domain';

/**
 * How the projection packs a connection's state (its stored JSON, `stateToJson`) for its state cache
 * and for the row (`connection_read_model.packed_state`): Snappy, behind one marker byte. Rows and
 * caches written before hold the JSON deflated (zlib, raw, level 1); both are read.
 *
 * Why Snappy: the projector packs every state it writes and unpacks every state it reads back, once
 * per row written. Deflate with Node's zlib cost ~16 µs to pack and ~7.5 µs to unpack a state with a
 * few minutes of calls in isolation, and about twice that in the projector (a zlib stream made and
 * freed per call: 31% of its busy CPU in the backlog's profile, 03b9470); Snappy ~5 µs and ~8 µs
 * (measured side by side, BENCHMARKS.md §5). It packs ~1.4× less tightly (687 B where deflate gave
 * 479 for 1.5 KB of JSON): the 128 MiB cache still holds every state at 100,000 connections.
 *
 * The marker: a raw deflate stream starts with a block header whose bits 1-2 are its type, and type
 * 3 is reserved (never written), so a first byte with those bits set cannot begin a deflate stream.
 */
const SNAPPY_MARKER = 0x06;

function isSnappy(bytes: Buffer): boolean {
  return bytes.length > 0 && ((bytes[0] >> 1) & 3) === 3;
}

/** A state's stored JSON, packed in a Buffer of its exact size (not a slice of a larger one it would keep alive). */
export function packState(stateJson: string): Buffer {
  const compressed = compressSync(stateJson);
  const bytes = Buffer.allocUnsafeSlow(compressed.length + 1);
  bytes[0] = SNAPPY_MARKER;
  compressed.copy(bytes, 1);
  return bytes;
}

/** The stored JSON a packed state holds (Snappy, or deflate as written before). */
export function unpackStateJson(bytes: Buffer): string {
  return isSnappy(bytes)
    ? (uncompressSync(bytes.subarray(1), { asBuffer: false }) as string)
    : inflateRawSync(bytes).toString('utf8');
}

/** The state a packed entry holds. */
export function unpackState(bytes: Buffer): ConnectionState {
  return stateFromJson(unpackStateJson(bytes));
}
