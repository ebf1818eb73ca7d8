import { Migration } from '../../../lib/db.js';

/** Drift samples from the inference workers, one OPEN alert per model version/kind/metric, alerts without a version. */
export class Migration0002Drift extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "monitoring"."drift_sample" ("id" uuid not null, "sample_key" text not null, "tenant" text not null, "model_name" text not null, "model_version_id" text not null, "reference_stats_key" text null, "job_id" text not null, "pair_index" int not null, "at" timestamptz not null, "summary" jsonb not null, "report_id" uuid null, "created_at" timestamptz not null, constraint "drift_sample_pkey" primary key ("id"));`);
    this.addSql(`create unique index "drift_sample_key_unique" on "monitoring"."drift_sample" ("sample_key");`);
    this.addSql(`create index "drift_sample_pending_index" on "monitoring"."drift_sample" ("tenant", "model_version_id", "at") where "report_id" is null;`);
    this.addSql(`alter table "monitoring"."drift_alert" alter column "model_version_id" drop not null;`);
    this.addSql(`create unique index "drift_alert_open_unique" on "monitoring"."drift_alert" ("tenant", "model_name", coalesce("model_version_id", ''), "kind", "metric") where "status" = 'OPEN';`);
  }
}
