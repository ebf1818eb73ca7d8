import { Migration } from '../../../lib/db.js';

export class Migration0001Initial extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create schema if not exists "datasets";`);
    this.addSql(`create table "datasets"."dataset" ("id" uuid not null, "tenant" text not null, "name" text not null, "description" text not null default '', "created_by" text not null, "version_count" int not null default 0, "created_at" timestamptz not null, "updated_at" timestamptz not null, constraint "dataset_pkey" primary key ("id"));`);
    this.addSql(`create index "dataset_tenant_index" on "datasets"."dataset" ("tenant");`);
    this.addSql(`create index "dataset_tenant_created_index" on "datasets"."dataset" ("tenant", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "datasets"."dataset" add constraint "dataset_tenant_name_unique" unique ("tenant", "name");`);
    this.addSql(`create table "datasets"."dataset_version" ("id" text not null, "tenant" text not null, "dataset_id" uuid not null, "number" int not null, "item_count" int not null, "labelled_count" int not null, "total_bytes" bigint not null, "manifest_key" text not null, "synthetic" jsonb null, "created_by" text not null, "created_at" timestamptz not null, constraint "dataset_version_pkey" primary key ("id"));`);
    this.addSql(`create index "dataset_version_tenant_index" on "datasets"."dataset_version" ("tenant");`);
    this.addSql(`alter table "datasets"."dataset_version" add constraint "dataset_version_dataset_id_number_unique" unique ("dataset_id", "number");`);
    this.addSql(`create table "datasets"."dataset_item" ("id" uuid not null, "version_id" text not null, "index" int not null, "before_key" text not null, "after_key" text not null, "label_key" text null, "width" int not null, "height" int not null, "bands" int not null, "format" text not null, "before_bytes" bigint not null, "after_bytes" bigint not null, "label_bytes" bigint null, constraint "dataset_item_pkey" primary key ("id"));`);
    this.addSql(`alter table "datasets"."dataset_item" add constraint "dataset_item_version_id_index_unique" unique ("version_id", "index");`);
    this.addSql(`create table "datasets"."upload" ("id" uuid not null, "tenant" text not null, "created_by" text not null, "filename" text not null, "content_type" text not null, "byte_size" bigint not null, "object_key" text not null, "expires_at" timestamptz not null, "created_at" timestamptz not null, constraint "upload_pkey" primary key ("id"));`);
    this.addSql(`create index "upload_tenant_index" on "datasets"."upload" ("tenant");`);
    this.addSql(`alter table "datasets"."dataset_version" add constraint "dataset_version_dataset_id_foreign" foreign key ("dataset_id") references "datasets"."dataset" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "datasets"."dataset_item" add constraint "dataset_item_version_id_foreign" foreign key ("version_id") references "datasets"."dataset_version" ("id") on update cascade on delete cascade;`);
  }
}
