import { blamedCopyLine, classifyAppendFailure, sqlState, unstorableDetail } from './append-failure';

function pgError(code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`error ${code} with "a quoted value"`), { code, ...extra });
}

describe('classifyAppendFailure', () => {
  it.each([
    ['22008 datetime_field_overflow (year 0000)', '22008'],
    ['22P02 invalid_text_representation', '22P02'],
    ['22P05 untranslatable_character', '22P05'],
    ['22023 invalid_parameter_value (a trigger)', '22023'],
    ['23514 check_violation', '23514'],
    ['23502 not_null_violation', '23502'],
    ['54000 program_limit_exceeded (index row too large)', '54000'],
  ])('%s is the content of a message', (_name, code) => {
    expect(classifyAppendFailure(pgError(code))).toBe('content');
  });

  it.each([
    ['08006 connection_failure', '08006'],
    ['08001 unable to connect', '08001'],
    ['53100 disk_full', '53100'],
    ['53200 out_of_memory', '53200'],
    ['53300 too_many_connections', '53300'],
    ['57P01 admin_shutdown', '57P01'],
    ['57P03 cannot_connect_now', '57P03'],
    ['57014 query_canceled (statement timeout)', '57014'],
    ['58030 io_error', '58030'],
    ['40001 serialization_failure', '40001'],
    ['40P01 deadlock_detected', '40P01'],
    ['55P03 lock_not_available', '55P03'],
    ['25006 read_only_sql_transaction', '25006'],
    ['42P01 undefined_table (a migration missing)', '42P01'],
    ['XX000 internal_error', 'XX000'],
    ['P0001 raise_exception (a trigger without a code)', 'P0001'],
    ['23505 unique_violation (a lost race that escaped the retries)', '23505'],
  ])('%s is the infrastructure', (_name, code) => {
    expect(classifyAppendFailure(pgError(code))).toBe('infrastructure');
  });

  it('treats errors without a SQLSTATE as the infrastructure (sockets, timeouts)', () => {
    expect(classifyAppendFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(
      'infrastructure',
    );
    expect(classifyAppendFailure(new Error('Connection terminated unexpectedly'))).toBe('infrastructure');
    expect(classifyAppendFailure(undefined)).toBe('infrastructure');
    expect(classifyAppendFailure('a string')).toBe('infrastructure');
  });

  it('treats a missing partition of the event log as the infrastructure (the clock), not the message', () => {
    const missing = Object.assign(new Error('no partition of relation "event_log" found for row'), { code: '23514' });
    expect(classifyAppendFailure(missing)).toBe('infrastructure');
    expect(classifyAppendFailure({ message: 'wrapped', driverError: missing })).toBe('infrastructure');
    expect(classifyAppendFailure(pgError('23514', { constraint: 'event_log_check' }))).toBe('content');
  });

  it('reads the SQLSTATE that TypeORM wraps as driverError', () => {
    const wrapped = Object.assign(new Error('query failed'), { driverError: pgError('22008') });
    expect(sqlState(wrapped)).toBe('22008');
    expect(classifyAppendFailure(wrapped)).toBe('content');
  });
});

describe('unstorableDetail', () => {
  it('names the SQLSTATE and its condition, never the message text', () => {
    const detail = unstorableDetail(pgError('22008'));
    expect(detail).toBe('The event log refused to store this message: SQLSTATE 22008 datetime_field_overflow.');
    expect(detail).not.toContain('quoted');
  });

  it('names the constraint when PostgreSQL names one, and the class for codes without a name here', () => {
    expect(unstorableDetail(pgError('23514', { constraint: 'event_log_check' }))).toBe(
      'The event log refused to store this message: SQLSTATE 23514 check_violation (constraint event_log_check).',
    );
    expect(unstorableDetail(pgError('22019'))).toBe(
      'The event log refused to store this message: SQLSTATE 22019 data exception.',
    );
  });

  it('leaves out a constraint name that is not a plain identifier', () => {
    expect(unstorableDetail(pgError('23514', { constraint: 'x"; drop' }))).toBe(
      'The event log refused to store this message: SQLSTATE 23514 check_violation.',
    );
  });
});

describe('blamedCopyLine', () => {
  it.each([
    ['COPY event_log, line 5', 5],
    ['COPY event_log, line 12, column occurred_at: "0000-06-01T00:00:00.000Z"', 12],
    ['PL/pgSQL function f() line 3 at RAISE\nCOPY event_log, line 1', 1],
  ])('reads %j', (where, line) => {
    expect(blamedCopyLine(pgError('22008', { where }))).toBe(line);
  });

  it('is undefined when the error names no COPY row', () => {
    expect(blamedCopyLine(pgError('22023'))).toBeUndefined();
    expect(blamedCopyLine(pgError('22023', { where: 'PL/pgSQL function f() line 3 at RAISE' }))).toBeUndefined();
    expect(blamedCopyLine(pgError('22023', { where: 'COPY other_table, line 3' }))).toBeUndefined();
  });
});
