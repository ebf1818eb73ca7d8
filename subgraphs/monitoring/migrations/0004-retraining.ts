import { Migration } from '../../../lib/db.js';

/** Retraining policies (one per tenant and model) and the decisions they made, one per policy and trigger occurrence. */
export class Migration0004Retraining extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "monitoring"."retraining_policy" ("id" uuid not null, "tenant" text not null, "model_name" text not null, "schedule" text null, "on_drift" boolean not null, "on_new_dataset_version" boolean not null, "cooldown_minutes" int not null, "max_runs_per_day" int null, "dataset_version_id" text null, "config" jsonb null, "enabled" boolean not null default true, "schedule_since" timestamptz not null, "last_scheduled_at" timestamptz null, "created_by" text not null, "updated_by" text not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, constraint "retraining_policy_pkey" primary key ("id"));`);
    this.addSql(`alter table "monitoring"."retraining_policy" add constraint "retraining_policy_tenant_model_unique" unique ("tenant", "model_name");`);
    this.addSql(`create table "monitoring"."retraining_decision" ("id" uuid not null, "tenant" text not null, "policy_id" uuid not null, "model_name" text not null, "trigger" text check ("trigger" in ('SCHEDULE', 'DRIFT_ALERT', 'NEW_DATASET_VERSION', 'MANUAL')) not null, "trigger_key" text not null, "reason" text not null, "outcome" text check ("outcome" in ('PENDING', 'STARTED', 'SKIPPED', 'FAILED')) not null, "training_run_id" text null, "skip_reason" text null, "error" text null, "dataset_version_id" text null, "requested_by" text not null, "at" timestamptz not null, "decided_at" timestamptz null, constraint "retraining_decision_pkey" primary key ("id"));`);
    this.addSql(`create index "retraining_decision_tenant_model_at_index" on "monitoring"."retraining_decision" ("tenant", "model_name", "at" desc, "id" desc);`);
    this.addSql(`alter table "monitoring"."retraining_decision" add constraint "retraining_decision_policy_trigger_key_unique" unique ("policy_id", "trigger_key");`);
    this.addSql(`alter table "monitoring"."retraining_decision" add constraint "retraining_decision_policy_id_foreign" foreign key ("policy_id") references "monitoring"."retraining_policy" ("id") on update cascade on delete cascade;`);
  }
}
