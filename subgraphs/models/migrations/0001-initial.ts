import { Migration } from '../../../lib/db.js';

// DDL derived from the entities (scripts/migration-sql.mjs); the custom indexes are declared on the entities by name.
export class Migration0001Initial extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create schema if not exists "models";`);
    this.addSql(`create table "models"."registered_model" ("id" uuid not null, "tenant" text not null, "name" text not null, "description" text not null default '', "created_at" timestamptz not null, "updated_at" timestamptz not null, "latest_version_number" int not null default 0, constraint "registered_model_pkey" primary key ("id"));`);
    this.addSql(`create index "registered_model_tenant_created_index" on "models"."registered_model" ("tenant", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "models"."registered_model" add constraint "registered_model_tenant_name_unique" unique ("tenant", "name");`);
    this.addSql(`create table "models"."training_run" ("id" uuid not null, "tenant" text not null, "model_name" text not null, "status" text check ("status" in ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')) not null default 'QUEUED', "params" jsonb not null, "dataset_version_id" text not null, "code_version" text not null, "requested_by" text not null, "error" text null, "started_at" timestamptz null, "finished_at" timestamptz null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "artifacts" jsonb not null, "log_key" text null, "idempotency_key" text null, "model_version_id" uuid null, constraint "training_run_pkey" primary key ("id"));`);
    this.addSql(`alter table "models"."training_run" add constraint "training_run_model_version_id_unique" unique ("model_version_id");`);
    this.addSql(`create index "training_run_tenant_created_index" on "models"."training_run" ("tenant", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "models"."training_run" add constraint "training_run_tenant_idempotency_key_unique" unique ("tenant", "idempotency_key");`);
    this.addSql(`create table "models"."training_metric" ("id" uuid not null, "run_id" uuid not null, "name" text not null, "step" int not null, "epoch" int null, "value" double precision not null, "recorded_at" timestamptz not null, constraint "training_metric_pkey" primary key ("id"));`);
    this.addSql(`alter table "models"."training_metric" add constraint "training_metric_run_id_name_step_unique" unique ("run_id", "name", "step");`);
    this.addSql(`create table "models"."model_version" ("id" uuid not null, "registered_model_id" uuid not null, "tenant" text not null, "version" int not null, "stage" text check ("stage" in ('NONE', 'STAGING', 'PRODUCTION', 'ARCHIVED')) not null default 'NONE', "aliases" text[] not null, "artifact_key" text not null, "sha256" text not null, "byte_size" bigint not null, "metrics" jsonb not null, "contract" jsonb not null, "training_run_id" uuid null, "source" text check ("source" in ('TRAINED', 'UPLOADED')) not null, "created_by" text not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, constraint "model_version_pkey" primary key ("id"));`);
    this.addSql(`create index "model_version_tenant_index" on "models"."model_version" ("tenant");`);
    // At most one PRODUCTION version per registered model, whatever the code does: promotion archives the old one first.
    this.addSql(`create unique index "model_version_one_production_unique" on "models"."model_version" ("registered_model_id") where "stage" = 'PRODUCTION';`);
    this.addSql(`create index "model_version_registered_model_created_index" on "models"."model_version" ("registered_model_id", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "models"."model_version" add constraint "model_version_registered_model_id_version_unique" unique ("registered_model_id", "version");`);
    this.addSql(`alter table "models"."training_run" add constraint "training_run_model_version_id_foreign" foreign key ("model_version_id") references "models"."model_version" ("id") on update cascade on delete set null;`);
    this.addSql(`alter table "models"."training_metric" add constraint "training_metric_run_id_foreign" foreign key ("run_id") references "models"."training_run" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "models"."model_version" add constraint "model_version_registered_model_id_foreign" foreign key ("registered_model_id") references "models"."registered_model" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "models"."model_version" add constraint "model_version_training_run_id_foreign" foreign key ("training_run_id") references "models"."training_run" ("id") on update cascade on delete set null;`);
  }
}
