import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * PostgreSQL resolves a plain name in ORDER BY to an output column first: `SELECT id::text AS id …
 * ORDER BY id` sorts by the text, so 100 comes before 99. That was the cause of the broken
 * health-change chains of issue 19 item 1 (the relay's read of its outbox). This looks at every SQL
 * text in the repository's TypeScript for an ORDER BY on a name that the same statement gives to a
 * cast output column.
 */
const ROOT = join(__dirname, '..', '..');

/** SQL texts (template literals holding ORDER BY) with the file and line they start at. */
function sqlTexts(): { file: string; line: number; sql: string }[] {
  const files = execFileSync('git', ['ls-files', '*.ts'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f !== '' && !f.endsWith('sql-order-by.spec.ts'));
  const out: { file: string; line: number; sql: string }[] = [];
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/`([^`]*\bORDER BY\b[^`]*)`/gi))
      out.push({ file, line: text.slice(0, m.index).split('\n').length, sql: m[1] });
  }
  return out;
}

/** Names an ORDER BY of `sql` sorts by that the statement also gives to a cast (`expr::type AS name`). */
export function orderByCastAliases(sql: string): string[] {
  const casts = new Set([...sql.matchAll(/::\s*\w+(?:\[\])?\s+AS\s+(\w+)/gi)].map((m) => m[1].toLowerCase()));
  const bad: string[] = [];
  for (const m of sql.matchAll(/\bORDER BY\s+([\s\S]*?)(?=\bLIMIT\b|\bOFFSET\b|\bFOR\b|\)|;|$)/gi))
    for (const term of m[1].split(',')) {
      const name = term.trim().split(/\s+/)[0]?.toLowerCase();
      if (name && casts.has(name)) bad.push(name);
    }
  return bad;
}

describe('ORDER BY never sorts by a cast output column named like a table column', () => {
  it('finds the pattern when it is there', () => {
    expect(orderByCastAliases(`SELECT id::text AS id, message FROM health_change_outbox ORDER BY id LIMIT $1`)).toEqual(
      ['id'],
    );
    expect(
      orderByCastAliases(`SELECT o.id::text AS outbox_id FROM health_change_outbox o ORDER BY o.id LIMIT $1`),
    ).toEqual([]);
    expect(orderByCastAliases(`SELECT x::text AS position FROM t ORDER BY tx, position DESC`)).toEqual(['position']);
  });

  it('holds for every SQL text in the repository', () => {
    const texts = sqlTexts();
    expect(texts.length).toBeGreaterThan(20);
    const found = texts
      .map((t) => ({ at: `${t.file}:${t.line}`, names: orderByCastAliases(t.sql) }))
      .filter((t) => t.names.length > 0);
    expect(found).toEqual([]);
  });
});
