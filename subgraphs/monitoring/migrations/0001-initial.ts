import { Migration } from '../../../lib/db.js';

export class Migration0001Initial extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create schema if not exists "monitoring";`);
    this.addSql(`create table "monitoring"."audit_event" ("id" uuid not null, "tenant" text not null, "actor" text not null, "roles" jsonb not null, "operation_name" text null, "field_name" text not null, "variables" jsonb not null, "outcome" text check ("outcome" in ('SUCCESS', 'DENIED', 'ERROR')) not null, "error_code" text null, "trace_id" text null, "at" timestamptz not null, constraint "audit_event_pkey" primary key ("id"));`);
    this.addSql(`create index "audit_event_tenant_at_index" on "monitoring"."audit_event" ("tenant", "at" desc, "id" desc);`);
    this.addSql(`create table "monitoring"."drift_alert" ("id" uuid not null, "tenant" text not null, "model_name" text not null, "model_version_id" text not null, "kind" text check ("kind" in ('DATA_DRIFT', 'MODEL_DRIFT')) not null, "metric" text not null, "value" double precision not null, "threshold" double precision not null, "window_start" timestamptz not null, "window_end" timestamptz not null, "status" text check ("status" in ('OPEN', 'ACKNOWLEDGED')) not null default 'OPEN', "acknowledged_by" text null, "acknowledged_at" timestamptz null, "created_at" timestamptz not null, constraint "drift_alert_pkey" primary key ("id"));`);
    this.addSql(`create index "drift_alert_tenant_created_index" on "monitoring"."drift_alert" ("tenant", "created_at" desc, "id" desc);`);
    this.addSql(`create table "monitoring"."drift_report" ("id" uuid not null, "tenant" text not null, "model_name" text not null, "model_version_id" text not null, "window_start" timestamptz not null, "window_end" timestamptz not null, "sample_count" int not null, "metrics" jsonb not null, "drifted" boolean not null, "created_at" timestamptz not null, constraint "drift_report_pkey" primary key ("id"));`);
    this.addSql(`create index "drift_report_tenant_model_created_index" on "monitoring"."drift_report" ("tenant", "model_name", "created_at" desc, "id" desc);`);
  }
}
