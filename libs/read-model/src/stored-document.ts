import { HealthWindow, healthWindowText, parseHealthWindow } from '@psp/domain';

/**
 * What the read model stores per listed connection (PostgreSQL `connection_read_model.document` and
 * the Redis documents hash, byte for byte the same): the Connection rendered when the connection last
 * changed, a newline, and the health window it was rendered from. JSON text never holds a raw
 * newline, so the first one separates the two. Readers evaluate the window at the stream time they
 * serve (docs/read-model.md, "Health at read time").
 */
export function storedDocument(connectionJson: string, window: HealthWindow): string {
  return `${connectionJson}\n${healthWindowText(window)}`;
}

export interface StoredDocument {
  /** The Connection JSON as rendered (its health is that of `window.renderedAt`). */
  connection: string;
  window: HealthWindow;
}

export function parseStoredDocument(text: string): StoredDocument {
  const cut = text.indexOf('\n');
  if (cut < 0) throw new Error('a stored document without its health window');
  return { connection: text.slice(0, cut), window: parseHealthWindow(text.slice(cut + 1)) };
}
