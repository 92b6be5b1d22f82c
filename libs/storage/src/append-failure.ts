import { isMissingPartition } from './log-partitions';

/**
 * Why an append to the event log failed, in the terms the writer acts on (docs/event-log.md,
 * "When an append fails"):
 *
 * - `content`: PostgreSQL refused what a message holds (a data exception, a constraint, a value too
 *   large for an index). Appending the same rows again fails again, forever; appending the others
 *   without the guilty one succeeds. The writer finds the guilty message(s), sends each to the DLQ
 *   with reason `unstorable`, appends the rest and commits.
 * - `infrastructure`: anything else: the database is unreachable, shutting down, out of resources,
 *   the transaction lost a serialization or lock race, our own SQL or schema is wrong, or the error
 *   carries no SQLSTATE at all (a socket error, a timeout). Retrying later can succeed; dropping a
 *   message for it would lose an event that is fine. The writer retries with backoff and never
 *   DLQs for it.
 *
 * A unique violation (23505) is neither here: the append handles it itself (a duplicate event_id, or
 * a stream version another writer took) before it ever reaches this classification, and one that
 * still escapes is a lost race: `infrastructure`.
 */
export type AppendFailureKind = 'content' | 'infrastructure';

/**
 * SQLSTATE classes whose errors name the data, not the system (PostgreSQL manual, Appendix A):
 * 22 data exception, 23 integrity constraint violation (but 23505), 54 program limit exceeded
 * (a row or index entry too large).
 */
const CONTENT_CLASSES: ReadonlySet<string> = new Set(['22', '23', '54']);

/** The SQLSTATE of a PostgreSQL error, as pg or TypeORM carry it; undefined for other errors. */
export function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; driverError?: { code?: unknown } } | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : e?.driverError?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export function classifyAppendFailure(error: unknown): AppendFailureKind {
  const state = sqlState(error);
  if (state === undefined || state === '23505') return 'infrastructure';
  // No partition for the append's recorded_at (23514 too, but about the clock, never the message).
  if (isMissingPartition(error)) return 'infrastructure';
  return CONTENT_CLASSES.has(state.slice(0, 2)) ? 'content' : 'infrastructure';
}

/** Condition names of the content SQLSTATEs most likely here (the rest are named by their class). */
const CONDITION_NAMES: Record<string, string> = {
  '22000': 'data_exception',
  '22001': 'string_data_right_truncation',
  '22003': 'numeric_value_out_of_range',
  '22007': 'invalid_datetime_format',
  '22008': 'datetime_field_overflow',
  '22012': 'division_by_zero',
  '22021': 'character_not_in_repertoire',
  '22023': 'invalid_parameter_value',
  '22P02': 'invalid_text_representation',
  '22P04': 'bad_copy_file_format',
  '22P05': 'untranslatable_character',
  '2200N': 'invalid_xml_content',
  '22030': 'duplicate_json_object_key_value',
  '22032': 'invalid_json_text',
  '23000': 'integrity_constraint_violation',
  '23502': 'not_null_violation',
  '23503': 'foreign_key_violation',
  '23514': 'check_violation',
  '23P01': 'exclusion_violation',
  '54000': 'program_limit_exceeded',
};

const CLASS_NAMES: Record<string, string> = {
  '22': 'data exception',
  '23': 'integrity constraint violation',
  '54': 'program limit exceeded',
};

/**
 * The `dlq-detail` of an `unstorable` message: the database's complaint by SQLSTATE and condition
 * name, and the constraint when one is named. Never PostgreSQL's message text, which can quote the
 * value it refused.
 */
export function unstorableDetail(error: unknown): string {
  const state = sqlState(error) ?? 'unknown';
  const name = CONDITION_NAMES[state] ?? CLASS_NAMES[state.slice(0, 2)] ?? 'error';
  const e = error as { constraint?: unknown; driverError?: { constraint?: unknown } };
  const constraint = typeof e?.constraint === 'string' ? e.constraint : e?.driverError?.constraint;
  const on =
    typeof constraint === 'string' && /^[A-Za-z0-9_]{1,63}$/.test(constraint) ? ` (constraint ${constraint})` : '';
  return `The event log refused to store this message: SQLSTATE ${state} ${name}${on}.`;
}

/**
 * The row of a failed COPY that PostgreSQL blames (1 for the first row), from the error's context
 * ("COPY event_log, line 5" or "..., line 5, column data: ..."); undefined when it names none.
 */
export function blamedCopyLine(error: unknown): number | undefined {
  const e = error as { where?: unknown; driverError?: { where?: unknown } };
  const where = typeof e?.where === 'string' ? e.where : e?.driverError?.where;
  if (typeof where !== 'string') return undefined;
  const m = /COPY event_log, line (\d+)/.exec(where);
  return m ? Number(m[1]) : undefined;
}
