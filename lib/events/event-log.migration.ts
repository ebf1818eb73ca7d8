import { Migration } from '../db.js';

/** The event log tables, in the schema of the subgraph that owns the events. */
export function eventLogMigration(schema: string) {
  return class EventLogMigration extends Migration {
    override async up(): Promise<void> {
      this.addSql(`create table "${schema}"."event_log" ("stream" text not null, "sequence" int not null, "type" text not null, "tenant" text not null, "routing_key" text not null, "payload" jsonb not null, "occurred_at" timestamptz not null, "published_at" timestamptz null, constraint "event_log_pkey" primary key ("stream", "sequence"));`);
      this.addSql(`create table "${schema}"."event_stream" ("stream" text not null, "last_sequence" int not null, constraint "event_stream_pkey" primary key ("stream"));`);
    }
  };
}
