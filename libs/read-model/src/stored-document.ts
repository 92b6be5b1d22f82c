import { HealthWindow, healthWindowText, parseHealthWindow } from '@psp/domain';

/**
 * What the read model stores per listed connection (PostgreSQL `connection_read_model.document` and
 * the Redis documents hash, byte for byte the same), three lines: the Connection rendered when the
 * connection last changed, the health window it was rendered from, and its stats window (CONTRACT
 * 1.5, `statsWindowText`). JSON text never holds a raw newline, so newlines separate them. Readers
 * evaluate the windows at the stream time they serve (docs/read-model.md, "Health at read time").
 */
export function storedDocument(connectionJson: string, window: HealthWindow, statsWindow: string): string {
  return `${connectionJson}\n${healthWindowText(window)}\n${statsWindow}`;
}

export interface StoredDocument {
  /** The Connection JSON as rendered (its health is that of `window.renderedAt`). */
  connection: string;
  window: HealthWindow;
  /** The stats window's text, parsed only when the stats route asks (`parseStatsWindow`). */
  statsWindow: string;
}

export function parseStoredDocument(text: string): StoredDocument {
  const first = text.indexOf('\n');
  const second = first < 0 ? -1 : text.indexOf('\n', first + 1);
  if (second < 0) throw new Error('a stored document without its windows');
  return {
    connection: text.slice(0, first),
    window: parseHealthWindow(text.slice(first + 1, second)),
    statsWindow: text.slice(second + 1),
  };
}
