import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The event log partitioned by the time of the append (`recorded_at`), so that a partition closes
 * and can be compacted, archived and dropped (docs/event-log.md, "Partitions, roll-ups and
 * archives"). A unique index on a partitioned table must contain the partition key, so the two
 * uniqueness rules of the log move to narrow tables of their own, written by a statement trigger in
 * the append's transaction:
 *
 * - `event_log_ids`: every event id ever logged (primary key `event_log_event_id`, the name the
 *   unique index had). It outlives the partitions: a duplicate is recognised at any time.
 * - `event_log_streams`: each stream's current version. An append must continue each of its streams
 *   exactly from that version, gap-free, else it fails with a unique violation naming
 *   `event_log_stream_version` (the name the unique index had): another writer moved the stream.
 *
 * The existing log is moved row for row: every column as it was, `position` and `transaction_id`
 * included, so the (transaction_id, position) order is unchanged.
 */
export class PartitionedEventLog1732400000005 implements MigrationInterface {
  name = 'PartitionedEventLog1732400000005';

  async up(q: QueryRunner): Promise<void> {
    // The old table steps aside; its unique indexes' names are reused below.
    await q.query(`ALTER TABLE event_log RENAME TO event_log_unpartitioned`);
    await q.query(`DROP TRIGGER event_log_append_only ON event_log_unpartitioned`);
    await q.query(`DROP INDEX event_log_event_id`);
    await q.query(`DROP INDEX event_log_stream_version`);
    await q.query(`DROP INDEX event_log_tail`);

    await q.query(`CREATE SEQUENCE event_log_position AS bigint`);
    await q.query(`
      CREATE TABLE event_log (
        position bigint NOT NULL DEFAULT nextval('event_log_position'),
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        event_id text NOT NULL,
        org_id text NOT NULL,
        connection_id text NOT NULL,
        stream_version integer NOT NULL CHECK (stream_version > 0),
        type text NOT NULL,
        occurred_at timestamptz NOT NULL,
        data json NOT NULL, -- json, not jsonb: keeps the producer's key order (free-form capabilities)
        source_topic text NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
      ) PARTITION BY RANGE (recorded_at)`);
    await q.query(`ALTER SEQUENCE event_log_position OWNED BY event_log.position`);
    await q.query(`CREATE INDEX event_log_tail ON event_log (transaction_id, position)`);
    await q.query(`
      CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log
      FOR EACH ROW EXECUTE FUNCTION event_log_is_append_only()`);

    await q.query(
      `CREATE TABLE event_log_ids (event_id text NOT NULL, CONSTRAINT event_log_event_id PRIMARY KEY (event_id))`,
    );
    await q.query(`
      CREATE TABLE event_log_streams (
        org_id text NOT NULL,
        connection_id text NOT NULL,
        version integer NOT NULL CHECK (version > 0),
        PRIMARY KEY (org_id, connection_id)
      ) WITH (fillfactor = 70)`); // every append updates its streams' rows: room on the page for HOT updates

    // Every partition ever created, also after it is detached or dropped (its range is never reused).
    await q.query(`
      CREATE TABLE event_log_partition (
        name text PRIMARY KEY,
        range_from timestamptz NOT NULL,
        range_to timestamptz NOT NULL CHECK (range_to > range_from),
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    // Creates the partitions that cover [cover_from, cover_to] and do not exist yet: ranges of
    // width_days whole UTC days, starting at a UTC midnight, never overlapping an existing range (a
    // hole is filled up to the next range). One caller at a time. The partition is created apart and
    // then attached: ATTACH takes a SHARE UPDATE EXCLUSIVE lock on event_log, which neither appends
    // nor reads wait for (CREATE TABLE … PARTITION OF would take an ACCESS EXCLUSIVE one).
    await q.query(`
      CREATE FUNCTION event_log_create_partitions(cover_from timestamptz, cover_to timestamptz, width_days integer)
      RETURNS integer LANGUAGE plpgsql AS $$
      DECLARE
        t timestamptz := date_trunc('day', cover_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        e timestamptz;
        next_from timestamptz;
        part text;
        created integer := 0;
      BEGIN
        IF width_days < 1 THEN RAISE EXCEPTION 'width_days must be at least 1'; END IF;
        PERFORM pg_advisory_xact_lock(hashtext('psp-connections:log-partitions'));
        WHILE t <= cover_to LOOP
          SELECT range_to INTO e FROM event_log_partition WHERE range_from <= t AND t < range_to;
          IF FOUND THEN
            t := e;
            CONTINUE;
          END IF;
          e := t + make_interval(days => width_days);
          SELECT min(range_from) INTO next_from FROM event_log_partition WHERE range_from > t;
          IF next_from IS NOT NULL AND next_from < e THEN e := next_from; END IF;
          part := 'event_log_p' || to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD');
          EXECUTE format('CREATE TABLE %I (LIKE event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
          EXECUTE format('ALTER TABLE event_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, t, e);
          INSERT INTO event_log_partition (name, range_from, range_to) VALUES (part, t, e);
          created := created + 1;
          t := e;
        END LOOP;
        RETURN created;
      END $$`);

    // The existing log, row for row, into partitions covering it (and a few days ahead).
    await q.query(
      `SELECT event_log_create_partitions(
                COALESCE((SELECT min(recorded_at) FROM event_log_unpartitioned), clock_timestamp()),
                GREATEST(COALESCE((SELECT max(recorded_at) FROM event_log_unpartitioned), clock_timestamp()), clock_timestamp())
                  + interval '3 days',
                1)`,
    );
    await q.query(`
      INSERT INTO event_log (position, transaction_id, event_id, org_id, connection_id, stream_version, type,
                             occurred_at, data, source_topic, source_partition, source_offset, recorded_at)
      SELECT position, transaction_id, event_id, org_id, connection_id, stream_version, type,
             occurred_at, data, source_topic, source_partition, source_offset, recorded_at
        FROM event_log_unpartitioned ORDER BY transaction_id, position`);
    await q.query(`INSERT INTO event_log_ids (event_id) SELECT event_id FROM event_log_unpartitioned`);
    await q.query(`
      INSERT INTO event_log_streams (org_id, connection_id, version)
      SELECT org_id, connection_id, max(stream_version) FROM event_log_unpartitioned GROUP BY org_id, connection_id`);
    await q.query(
      `SELECT setval('event_log_position', COALESCE((SELECT max(position) FROM event_log_unpartitioned), 0) + 1, false)`,
    );
    await q.query(`DROP TABLE event_log_unpartitioned`);

    // From now on every append (COPY or INSERT into event_log) keeps the two tables in step, in its
    // own transaction: one statement each, over the statement's rows.
    await q.query(`
      CREATE FUNCTION event_log_appended() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        streams bigint;
        moved bigint;
      BEGIN
        -- An id logged before, at any time, fails the append (unique violation on event_log_event_id).
        INSERT INTO event_log_ids (event_id) SELECT event_id FROM appended;
        -- Each stream's rows must continue its current version exactly, without gaps or repeats.
        WITH s AS (
          SELECT org_id, connection_id, min(stream_version) AS first, max(stream_version) AS last,
                 count(*) AS n, count(DISTINCT stream_version) AS d
            FROM appended GROUP BY org_id, connection_id
        ), ok AS (
          SELECT * FROM s WHERE d = n AND last - first + 1 = n
        ), updated AS (
          UPDATE event_log_streams t SET version = ok.last FROM ok
           WHERE t.org_id = ok.org_id AND t.connection_id = ok.connection_id AND t.version = ok.first - 1
          RETURNING 1
        ), inserted AS (
          INSERT INTO event_log_streams (org_id, connection_id, version)
          SELECT ok.org_id, ok.connection_id, ok.last FROM ok WHERE ok.first = 1
          ON CONFLICT (org_id, connection_id) DO NOTHING
          RETURNING 1
        )
        SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
          INTO streams, moved;
        IF moved < streams THEN
          RAISE EXCEPTION 'stream version already taken: another append moved % of the % streams first', streams - moved, streams
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'event_log_stream_version', TABLE = 'event_log';
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER event_log_appended AFTER INSERT ON event_log
      REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION event_log_appended()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE event_log RENAME TO event_log_partitioned`);
    await q.query(`DROP TRIGGER event_log_appended ON event_log_partitioned`);
    await q.query(`DROP TRIGGER event_log_append_only ON event_log_partitioned`);
    await q.query(`ALTER INDEX event_log_tail RENAME TO event_log_partitioned_tail`);
    await q.query(`
      CREATE TABLE event_log (
        position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        event_id text NOT NULL,
        org_id text NOT NULL,
        connection_id text NOT NULL,
        stream_version integer NOT NULL CHECK (stream_version > 0),
        type text NOT NULL,
        occurred_at timestamptz NOT NULL,
        data json NOT NULL,
        source_topic text NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await q.query(`
      INSERT INTO event_log (position, transaction_id, event_id, org_id, connection_id, stream_version, type,
                             occurred_at, data, source_topic, source_partition, source_offset, recorded_at)
      OVERRIDING SYSTEM VALUE
      SELECT position, transaction_id, event_id, org_id, connection_id, stream_version, type,
             occurred_at, data, source_topic, source_partition, source_offset, recorded_at
        FROM event_log_partitioned ORDER BY transaction_id, position`);
    await q.query(
      `SELECT setval(pg_get_serial_sequence('event_log', 'position'), COALESCE((SELECT max(position) FROM event_log), 0) + 1, false)`,
    );
    await q.query(`DROP TABLE event_log_partitioned`);
    await q.query(`DROP TABLE event_log_ids`);
    await q.query(`DROP TABLE event_log_streams`);
    await q.query(`DROP TABLE event_log_partition`);
    await q.query(`DROP FUNCTION event_log_appended()`);
    await q.query(`DROP FUNCTION event_log_create_partitions(timestamptz, timestamptz, integer)`);
    await q.query(`CREATE UNIQUE INDEX event_log_event_id ON event_log (event_id)`);
    await q.query(`CREATE UNIQUE INDEX event_log_stream_version ON event_log (org_id, connection_id, stream_version)`);
    await q.query(`CREATE INDEX event_log_tail ON event_log (transaction_id, position)`);
    await q.query(`
      CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log
      FOR EACH ROW EXECUTE FUNCTION event_log_is_append_only()`);
  }
}
