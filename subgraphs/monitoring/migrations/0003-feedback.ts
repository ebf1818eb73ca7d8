import { Migration } from '../../../lib/db.js';

/** Labelled feedback on job results (model drift): one row per tenant, job and pair. */
export class Migration0003Feedback extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "monitoring"."feedback" ("id" uuid not null, "tenant" text not null, "job_id" text not null, "pair_index" int not null, "model_name" text not null, "model_version_id" text not null, "label_upload_id" text not null, "label_key" text not null, "tp" bigint not null, "fp" bigint not null, "fn" bigint not null, "tn" bigint not null, "iou" double precision not null, "f1" double precision not null, "created_by" text not null, "created_at" timestamptz not null, constraint "feedback_pkey" primary key ("id"));`);
    this.addSql(`alter table "monitoring"."feedback" add constraint "feedback_tenant_job_id_pair_index_unique" unique ("tenant", "job_id", "pair_index");`);
    this.addSql(`create index "feedback_tenant_model_created_index" on "monitoring"."feedback" ("tenant", "model_name", "created_at", "id");`);
  }
}
