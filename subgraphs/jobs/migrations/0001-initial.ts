import { Migration } from '../../../lib/db.js';

export class Migration0001Initial extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create schema if not exists "jobs";`);
    this.addSql(`create table "jobs"."job" ("id" uuid not null, "tenant" text not null, "kind" text check ("kind" in ('SYNC', 'BATCH')) not null, "status" text check ("status" in ('QUEUED', 'RUNNING', 'SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED')) not null default 'QUEUED', "pair_count" int not null, "succeeded_count" int not null default 0, "failed_count" int not null default 0, "model_name" text not null, "model_version_id" text null, "threshold" double precision null, "dataset_version_id" text null, "idempotency_key" text null, "input_hash" text not null, "requested_by" text not null, "error" text null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "started_at" timestamptz null, "finished_at" timestamptz null, constraint "job_pkey" primary key ("id"));`);
    this.addSql(`create index "job_tenant_created_index" on "jobs"."job" ("tenant", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "jobs"."job" add constraint "job_tenant_idempotency_key_unique" unique ("tenant", "idempotency_key");`);
    this.addSql(`create table "jobs"."job_pair" ("id" uuid not null, "job_id" uuid not null, "index" int not null, "before_key" text not null, "after_key" text not null, "before_upload_id" text null, "after_upload_id" text null, "status" text check ("status" in ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')) not null default 'QUEUED', "attempts" int not null default 0, "error" text null, "result_keys" jsonb null, "stats" jsonb null, "width" int null, "height" int null, "model_version_id" text null, "started_at" timestamptz null, "finished_at" timestamptz null, constraint "job_pair_pkey" primary key ("id"));`);
    this.addSql(`alter table "jobs"."job_pair" add constraint "job_pair_job_id_index_unique" unique ("job_id", "index");`);
    this.addSql(`alter table "jobs"."job_pair" add constraint "job_pair_job_id_foreign" foreign key ("job_id") references "jobs"."job" ("id") on update cascade on delete cascade;`);
  }
}
