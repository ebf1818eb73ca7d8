import { Migration } from '../../../lib/db.js';

// The training pipeline: failure codes, the trainer's environment, the weights hash and the dispatched request of a
// run; the gate decision and drift reference of a version; the stage history rollback reads; MLflow mirror ids.
// DDL derived from the entities (scripts/migration-sql.mjs).
export class Migration0002TrainingPipeline extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "models"."training_run" add column "error_code" text null, add column "environment" jsonb null, add column "weights_sha256" text null, add column "request" jsonb null, add column "dispatched_at" timestamptz null, add column "cancel_requested_at" timestamptz null, add column "attempt" int not null default 0, add column "mlflow_run_id" text null;`);
    this.addSql(`alter table "models"."model_version" add column "gate" jsonb null, add column "reference_stats_key" text null, add column "mlflow_version" text null;`);
    this.addSql(`create table "models"."model_stage_change" ("id" uuid not null, "tenant" text not null, "registered_model_id" uuid not null, "model_version_id" uuid not null, "from_stage" text check ("from_stage" in ('NONE', 'STAGING', 'PRODUCTION', 'ARCHIVED')) not null, "to_stage" text check ("to_stage" in ('NONE', 'STAGING', 'PRODUCTION', 'ARCHIVED')) not null, "changed_by" text not null, "reason" text not null default '', "changed_at" timestamptz not null, constraint "model_stage_change_pkey" primary key ("id"));`);
    this.addSql(`create index "model_stage_change_model_changed_index" on "models"."model_stage_change" ("registered_model_id", "changed_at" desc, "id" desc);`);
    this.addSql(`alter table "models"."model_stage_change" add constraint "model_stage_change_registered_model_id_foreign" foreign key ("registered_model_id") references "models"."registered_model" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "models"."model_stage_change" add constraint "model_stage_change_model_version_id_foreign" foreign key ("model_version_id") references "models"."model_version" ("id") on update cascade on delete cascade;`);
  }
}
