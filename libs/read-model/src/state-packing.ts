import { inflateRawSync } from 'node:zlib';
import { compressSync, uncompressSync } from 'snappy';
import { ConnectionState, stateFromJson } from '@psp/domain';

/**
 * How the projection packs a connection's state (its stored JSON, `stateToJson`) for its state cache
 * and for the row (`connection_read_model.packed_state`): Snappy, behind one marker byte. Rows and
 * caches written before hold the JSON deflated (zlib, raw, level 1); both are read.
 *
 * Why Snappy: the projector packs every state it writes and unpacks every state it reads back, once
 * per row written, and zlib's deflate (a stream made and freed per call) was 31% of its busy CPU on a
 * backlog (BENCHMARKS.md §5). `npm run bench:memory` times both: for a state with 3 minutes of calls,
 * Snappy packs in 4.6 µs and unpacks (JSON.parse included) in 12.7 µs where deflate took 21.5 and 18.1;
 * about the same at a full hour of calls. It packs 1.4-1.7× less tightly: the 128 MiB cache still holds
 * every state at 100,000 connections.
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
