import { Migration } from '../../../lib/db.js';

/** Dispatch tracking and progress sequence of jobs; error codes and result details of pairs. */
export class Migration0002ChangeDetection extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "jobs"."job" add column "dispatched_at" timestamptz null, add column "event_sequence" int not null default 0;`);
    this.addSql(`alter table "jobs"."job_pair" add column "error_code" text null, add column "details" jsonb null;`);
  }
}
