import { Migration } from '../../../lib/db.js';

/** Indexes on age alone, for the retention pass (retention.ts): its batched deletes find the oldest rows without a scan. */
export class Migration0005Retention extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create index "drift_sample_at_index" on "monitoring"."drift_sample" ("at");`);
    this.addSql(`create index "audit_event_at_index" on "monitoring"."audit_event" ("at");`);
  }
}
