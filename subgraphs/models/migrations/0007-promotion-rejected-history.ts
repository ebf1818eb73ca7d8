import { Migration } from '../../../lib/db.js';

// A rejected promotion request is a record of the model's append-only history too (PROMOTION_REJECTED), as a
// withdrawn one is. Only the kind's check constraint changes (named as 0006 left it).
export class Migration0007PromotionRejectedHistory extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "models"."model_stage_change" drop constraint if exists "model_stage_change_kind_check";`);
    this.addSql(
      `alter table "models"."model_stage_change" add constraint "model_stage_change_kind_check" check ("kind" in ('STAGE', 'ALIAS_SET', 'ALIAS_REMOVED', 'PROMOTION_CANCELLED', 'PROMOTION_REJECTED'));`,
    );
  }
}
