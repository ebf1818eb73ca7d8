import { Migration } from '../../../lib/db.js';

// The registry lifecycle: promotion requests with their evidence (at most one PENDING per version), named aliases
// unique within a model, and alias changes in the (append-only) stage history. DDL derived from the entities
// (scripts/migration-sql.mjs); the trigger is not an entity's and is kept here only.
export class Migration0004Lifecycle extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "models"."promotion_request" ("id" uuid not null, "tenant" text not null, "registered_model_id" uuid not null, "model_version_id" uuid not null, "status" text check ("status" in ('PENDING', 'APPROVED', 'REJECTED')) not null default 'PENDING', "requested_by" text not null, "reason" text not null, "evidence" jsonb not null, "created_at" timestamptz not null, "decided_by" text null, "decided_at" timestamptz null, "decision_reason" text null, constraint "promotion_request_pkey" primary key ("id"));`);
    this.addSql(`create unique index "promotion_request_one_pending_unique" on "models"."promotion_request" ("model_version_id") where "status" = 'PENDING';`);
    this.addSql(`create index "promotion_request_model_created_index" on "models"."promotion_request" ("registered_model_id", "created_at" desc, "id" desc);`);
    this.addSql(`alter table "models"."promotion_request" add constraint "promotion_request_registered_model_id_foreign" foreign key ("registered_model_id") references "models"."registered_model" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "models"."promotion_request" add constraint "promotion_request_model_version_id_foreign" foreign key ("model_version_id") references "models"."model_version" ("id") on update cascade on delete cascade;`);

    this.addSql(`create table "models"."model_alias" ("id" uuid not null, "tenant" text not null, "registered_model_id" uuid not null, "alias" text not null, "model_version_id" uuid not null, "updated_by" text not null, "updated_at" timestamptz not null, constraint "model_alias_pkey" primary key ("id"));`);
    this.addSql(`alter table "models"."model_alias" add constraint "model_alias_registered_model_id_alias_unique" unique ("registered_model_id", "alias");`);
    this.addSql(`alter table "models"."model_alias" add constraint "model_alias_registered_model_id_foreign" foreign key ("registered_model_id") references "models"."registered_model" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "models"."model_alias" add constraint "model_alias_model_version_id_foreign" foreign key ("model_version_id") references "models"."model_version" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "models"."model_stage_change" add column "kind" text check ("kind" in ('STAGE', 'ALIAS_SET', 'ALIAS_REMOVED')) not null default 'STAGE', add column "alias" text null, add column "previous_model_version_id" uuid null, add column "position" int not null default 0;`);
    this.addSql(`alter table "models"."model_stage_change" add constraint "model_stage_change_previous_model_version_id_foreign" foreign key ("previous_model_version_id") references "models"."model_version" ("id") on update cascade on delete cascade;`);

    // The history is append-only: what happened stays as it was recorded, whatever the code does later.
    this.addSql(`create or replace function "models"."model_stage_change_append_only"() returns trigger language plpgsql as $$ begin raise exception 'model_stage_change is append-only'; end $$;`);
    this.addSql(`create trigger "model_stage_change_append_only" before update or delete on "models"."model_stage_change" for each row execute function "models"."model_stage_change_append_only"();`);
  }
}
