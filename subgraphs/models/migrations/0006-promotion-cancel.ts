import { Migration } from '../../../lib/db.js';

// A pending promotion request can be withdrawn (CANCELLED), and the withdrawal is a record of the model's append-only
// history (PROMOTION_CANCELLED). Only the enum check constraints change; their names are Postgres's own for a column
// check declared inline (`<table>_<column>_check`), as 0004 created them.
export class Migration0006PromotionCancel extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "models"."promotion_request" drop constraint if exists "promotion_request_status_check";`);
    this.addSql(
      `alter table "models"."promotion_request" add constraint "promotion_request_status_check" check ("status" in ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED'));`,
    );
    this.addSql(`alter table "models"."model_stage_change" drop constraint if exists "model_stage_change_kind_check";`);
    this.addSql(
      `alter table "models"."model_stage_change" add constraint "model_stage_change_kind_check" check ("kind" in ('STAGE', 'ALIAS_SET', 'ALIAS_REMOVED', 'PROMOTION_CANCELLED'));`,
    );
  }
}
